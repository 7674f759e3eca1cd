"""Concurrent jobs: the aggregate throughput of 1, 2 and 3 jobs running at once against the same
jobs run one after another, measured in one run.

Each job is a background job (``jobs.start_training``, a thread of this process, as from a
notebook) with a fixed amount of work. ``ratio = sequential seconds / concurrent seconds`` for
the same set of jobs: 1.0 means the cores are shared without loss, below 1 means the jobs slow
each other down more than running them in turn would.

Policies (``--policy``):

- ``budget``  (the workbench): each job gets its default thread budget (an even share of the
  cores among the jobs running when it starts); MAML runs its tasks on the shared pool of
  single-threaded workers (``vectorize: auto``).
- ``all-cores``  (before issue 17): every job asks for all cores as intra-op threads and MAML
  runs its per-task loop with them (``vectorize: loop``) — the oversubscription case.

Kinds (``--kinds``): ``maml`` (second order, Conv-4/32, 5-way 1-shot 15-query, meta-batch 8),
``protonet`` (Conv-4/64, 20-way training, meta-batch 2), ``baseline`` (small CNN on a generated
image folder).

    nice -n 10 python benchmarks/bench_jobs.py --json benchmarks/results/bench_jobs.json   # ~10 min
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def commands(kind: str, steps: int, policy: str, cores: int) -> dict[str, Any]:
    threads = {"threads": cores} if policy == "all-cores" else {}
    if kind == "maml":
        return {"kind": "maml", "name": "bench-jobs-maml", "seed": 0, "steps": steps, "val_episodes": 0,
                "test_episodes": 0, "episodes": {"n_way": 5, "k_shot": 1, "q_query": 15, "meta_batch": 8},
                "model": {"params": {"hidden": 32}},
                "maml": {"vectorize": "loop" if policy == "all-cores" else "auto"}, **threads}
    if kind == "protonet":
        return {"kind": "protonet", "name": "bench-jobs-protonet", "seed": 0, "steps": steps, "val_episodes": 0,
                "test_episodes": 0, "episodes": {"n_way": 5, "k_shot": 1, "q_query": 5, "meta_batch": 2,
                                                 "train_n_way": 20}, **threads}
    return {"name": "bench-jobs-baseline", "image_size": 32, "epochs": max(1, steps // 10), "batch_size": 32,
            "model": {"preset": "small_cnn", "params": {"hidden": 32}}, "seed": 0, **threads}


def run_jobs(kind: str, n: int, concurrent: bool, steps: int, policy: str, data: Any, log: Any,
             cores: int) -> tuple[float, list[float]]:
    """Wall seconds for ``n`` jobs (at once or one after another) and each job's train seconds."""
    from workbench import jobs

    cmd = commands(kind, steps, policy, cores)
    t = time.perf_counter()
    if concurrent:
        handles = [jobs.start_training(cmd, data=data, log=log) for _ in range(n)]
        results = jobs.wait_all(handles)
    else:
        results = [jobs.start_training(cmd, data=data, log=log).wait() for _ in range(n)]
    wall = time.perf_counter() - t
    bad = [r for r in results if not r or r["status"] != "trained"]
    if bad:
        raise RuntimeError(f"a {kind} job did not train: {bad[0]}")
    return wall, [r["summary"]["train_seconds"] for r in results]


def main() -> None:
    ap = argparse.ArgumentParser(description="aggregate throughput of concurrent jobs")
    ap.add_argument("--kinds", default="maml,protonet,baseline")
    ap.add_argument("--jobs", default="1,2,3", help="numbers of concurrent jobs to measure")
    ap.add_argument("--policy", default="budget,all-cores")
    ap.add_argument("--steps", type=int, default=60, help="meta-iterations per few-shot job (baseline: steps/10 epochs)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    os.environ.pop("WORKBENCH_THREADS", None)
    from workbench import runtime
    from workbench.data.glyphs import load_glyphs
    from workbench.runlog import RunLog

    sys.path.insert(0, str(HERE.parent / "tests" / "training"))
    from training_support import make_shapes

    cores = runtime.cpu_cores()
    tmp = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    log = RunLog(tmp / "runs.json")
    data = {"maml": load_glyphs(), "protonet": load_glyphs(),
            "baseline": make_shapes(tmp / "shapes", per_class=100, size=32)}
    print(f"{cores} cores, load average {os.getloadavg()[0]:.2f}; jobs are threads of this process")
    out: dict[str, Any] = {"cores": cores, "steps": args.steps, "loadavg_start": os.getloadavg()[0], "results": []}
    counts = [int(v) for v in args.jobs.split(",")]
    for kind in args.kinds.split(","):
        run_jobs(kind, 1, False, max(2, args.steps // 10), "budget", data[kind], log, cores)  # warm-up
        for policy in args.policy.split(","):
            for n in counts:
                seq, seq_each = run_jobs(kind, n, False, args.steps, policy, data[kind], log, cores)
                conc, conc_each = (seq, seq_each) if n == 1 else run_jobs(kind, n, True, args.steps, policy,
                                                                           data[kind], log, cores)
                row = {"kind": kind, "policy": policy, "jobs": n, "sequential_s": seq, "concurrent_s": conc,
                       "ratio": seq / conc, "train_s_sequential": seq_each, "train_s_concurrent": conc_each}
                out["results"].append(row)
                print(f"  {kind:9s} {policy:9s} {n} job(s): one after another {seq:7.1f} s, at once {conc:7.1f} s"
                      f"  → aggregate throughput ×{seq / conc:4.2f}", flush=True)
    out["loadavg_end"] = os.getloadavg()[0]
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
