"""ProtoNet's training step against easyfsl's on the same tasks, measured interleaved in one run.

- ``workbench``   :class:`~workbench.learners.protonet.ProtoNet`'s training step — each task its
                  own channels-last encoder pass on the task pool (as many workers as the row's
                  threads, one intra-op thread each), prototypes, cross-entropy; backward, Adam.
- ``before``      the same step as it was before issue 17 (a standard channels-first Conv-4 with
                  ReLU before the pool, one pass over the meta-batch).
- ``easyfsl``     easyfsl 1.5's ``PrototypicalNetworks`` over the same standard Conv-4, one task per
                  forward (``process_support_set`` + ``forward``), as its episodic training does;
                  when easyfsl is not installed the same per-task loop written out stands in.

Settings: the glyph target's training tasks (20-way 1-shot 5-query, meta-batch 2) and 5-way
1-shot 15-query (meta-batch 4); Conv-4/64, 28×28. Threads: 1 and all cores; ``--load`` adds a
phase under a competing job (bench_maml's load). Median of ``--reps``; ratio = time / easyfsl's.

    nice -n 10 python benchmarks/bench_protonet.py --json benchmarks/results/bench_protonet.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_maml import start_load  # noqa: E402


def standard_conv4(hidden: int = 64) -> nn.Module:
    layers: list[nn.Module] = []
    c = 1
    for _ in range(4):
        layers += [nn.Conv2d(c, hidden, 3, padding=1), nn.BatchNorm2d(hidden), nn.ReLU(), nn.MaxPool2d(2)]
        c = hidden
    return nn.Sequential(*layers, nn.Flatten())


def tasks(b: int, n: int, k: int, q: int):
    g = torch.Generator().manual_seed(0)
    sx, qx = torch.rand(b, n * k, 1, 28, 28, generator=g), torch.rand(b, n * q, 1, 28, 28, generator=g)
    return sx, torch.arange(n).repeat_interleave(k).repeat(b, 1), qx, torch.arange(n).repeat_interleave(q).repeat(b, 1)


def variants(batch) -> dict:
    from workbench.learners.protonet import ProtoNet, proto_logits, prototypes

    sx, sy, qx, qy = batch
    class Quiet(ProtoNet):
        def log(self, *args, **kwargs) -> None:  # no Trainer here
            pass

    torch.manual_seed(0)
    ours = Quiet(hidden=64).train()
    opt_ours = torch.optim.Adam(ours.parameters(), 1e-3)
    before = standard_conv4().train()
    opt_before = torch.optim.Adam(before.parameters(), 1e-3)

    def step_ours() -> None:
        loss = ours.training_step(batch, 0)
        opt_ours.zero_grad()
        loss.backward()
        opt_ours.step()

    def step_before() -> None:
        b, s = sx.shape[:2]
        z = before(torch.cat([sx.flatten(0, 1), qx.flatten(0, 1)]))
        zs, zq = z[: b * s].view(b, s, -1), z[b * s:].view(b, qx.shape[1], -1)
        logits = proto_logits(zq, prototypes(zs, sy, int(sy.max()) + 1))
        opt_before.zero_grad()
        F.cross_entropy(logits.flatten(0, 1), qy.flatten()).backward()
        opt_before.step()

    try:
        from easyfsl.methods import PrototypicalNetworks

        efs = PrototypicalNetworks(standard_conv4()).train()
        name = "easyfsl"

        def scores(i: int) -> torch.Tensor:
            efs.process_support_set(sx[i], sy[i])
            return efs(qx[i])
    except ImportError:
        efs = standard_conv4().train()
        name = "easyfsl-equivalent loop"

        def scores(i: int) -> torch.Tensor:
            protos = prototypes(efs(sx[i]), sy[i], int(sy[i].max()) + 1)
            return proto_logits(efs(qx[i]), protos)
    opt_efs = torch.optim.Adam(efs.parameters(), 1e-3)

    def step_efs() -> None:
        opt_efs.zero_grad()
        for i in range(sx.shape[0]):
            (F.cross_entropy(scores(i), qy[i]) / sx.shape[0]).backward()
        opt_efs.step()
    return {name: step_efs, "workbench": step_ours, "before": step_before}


def measure(vs: dict, reps: int, threads: int) -> dict[str, float]:
    """Median seconds per step, every variant run as a job with ``threads`` (intra-op threads for
    the others, task-pool workers for the workbench)."""
    from workbench import runtime

    times: dict[str, list[float]] = {k: [] for k in vs}
    with runtime.job_threads(threads):
        for f in vs.values():
            f()
        for _ in range(reps):
            for k, f in vs.items():
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description="ProtoNet step vs easyfsl")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--load", action="store_true", help="also measure under a competing job")
    ap.add_argument("--json")
    args = ap.parse_args()
    from workbench import runtime

    runtime.tune_allocator()
    cores = runtime.cpu_cores()
    print(f"{cores} cores, load average {os.getloadavg()[0]:.2f}; median of {args.reps}, variants interleaved")
    out: dict = {"cores": cores, "reps": args.reps, "rows": []}
    phases = [("quiet", None)] + ([("load", cores)] if args.load else [])
    for phase, load_threads in phases:
        load = start_load(load_threads) if load_threads else None
        try:
            for label, shape in (("20-way 1-shot 5-query, meta-batch 2", (2, 20, 1, 5)),
                                 ("5-way 1-shot 15-query, meta-batch 4", (4, 5, 1, 15))):
                vs = variants(tasks(*shape))
                ref_name = next(iter(vs))
                for threads in sorted({1, cores}):
                    med = measure(vs, args.reps, threads)
                    ref = med[ref_name]
                    cells = ", ".join(f"{k} {1000 * v:.0f} ms (×{v / ref:.2f})" for k, v in med.items())
                    print(f"  [{phase}] {label}, {threads} thread(s): {cells}", flush=True)
                    out["rows"].append({"phase": phase, "tasks": label, "threads": threads, "median_s": med,
                                        "ratio_vs": ref_name, "ratio": {k: v / ref for k, v in med.items()}})
        finally:
            if load is not None:
                load.kill()
                load.wait()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
