"""Speed of one second-order MAML meta-iteration, against a plain per-task autograd loop
measured in the same run.

Setting (the issue's): Conv-4 with 32 filters, 28×28 inputs, 5-way 1-shot 15-query, meta-batch
16, 1 inner step, forward + backward of the meta-loss. Variants:

- ``baseline``  per-task loop, ``torch.autograd.grad(create_graph=True)``, ``nn.BatchNorm2d``
- ``loop+bn``   the same loop with :class:`~workbench.learners.maml.TransductiveBatchNorm2d`
- ``vmap+bn``   ``torch.func.vmap`` over tasks of ``torch.func.grad`` (plain-ops BatchNorm;
                vmap over ``nn.BatchNorm2d`` gives wrong second-order gradients, so it is not timed)
- ``*+cl``      channels-last inputs
- first order (FOMAML) of the baseline and of the fastest variant

    python benchmarks/bench_maml.py                # CPU, 2 threads
    python benchmarks/bench_maml.py --device cuda  # GPU (H100 numbers in the README)

Variants are interleaved round-robin and the median of ``--reps`` is reported, so load from
other processes hits all of them alike; on shared CPU cores the ratios are still noisy.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def make_batch(b: int, n: int, k: int, q: int, size: int, device: torch.device, channels_last: bool = False):
    g = torch.Generator().manual_seed(0)
    sx = torch.rand(b, n * k, 1, size, size, generator=g)
    qx = torch.rand(b, n * q, 1, size, size, generator=g)
    sy = torch.arange(n).repeat_interleave(k).repeat(b, 1)
    qy = torch.arange(n).repeat_interleave(q).repeat(b, 1)
    if channels_last:  # per-task [N·K, C, H, W] slices in NHWC
        sx = sx.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
        qx = qx.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    return [t.to(device) for t in (sx, sy, qx, qy)]


def main() -> None:
    ap = argparse.ArgumentParser(description="MAML meta-iteration speed")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--meta-batch", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from workbench.learners.maml import meta_loss, use_fast_batchnorm
    from workbench.nets.backbones import conv4

    dev = torch.device(args.device)
    torch.manual_seed(0)
    base_net = conv4(1, 5, args.hidden, 28, track_running_stats=False).to(dev)
    fast_net = use_fast_batchnorm(conv4(1, 5, args.hidden, 28, track_running_stats=False).to(dev))
    fast_net.load_state_dict(base_net.state_dict())
    plain = make_batch(args.meta_batch, 5, 1, 15, 28, dev)
    cl = make_batch(args.meta_batch, 5, 1, 15, 28, dev, channels_last=True)
    variants = {  # name: (net, batch, vectorize, first_order)
        "baseline": (base_net, plain, "loop", False),
        "loop+bn": (fast_net, plain, "loop", False),
        "vmap+bn": (fast_net, plain, "vmap", False),
        "loop+bn+cl": (fast_net, cl, "loop", False),
        "vmap+bn+cl": (fast_net, cl, "vmap", False),
        "baseline FO": (base_net, plain, "loop", True),
        "loop+bn FO": (fast_net, plain, "loop", True),
        "vmap+bn FO": (fast_net, plain, "vmap", True),
    }

    def step(net, batch, mode, fo):
        params = dict(net.named_parameters())
        loss, _ = meta_loss(net, params, *batch, 1, 0.4, fo, None, mode)
        loss.backward()
        for p in params.values():
            p.grad = None

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for v in variants.values():  # warm-up (and CUDA kernel selection)
        for _ in range(2):
            step(*v)
    sync()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.reps):
        for name, v in variants.items():
            sync()
            t = time.perf_counter()
            step(*v)
            sync()
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    base = med["baseline"]
    so = [k for k in med if not k.endswith("FO")]
    best = min(so, key=med.get)
    print(f"device {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f'{args.threads} threads'}),"
          f" meta-batch {args.meta_batch}, Conv-4/{args.hidden}, 5-way 1-shot 15-query, 1 inner step;"
          f" median of {args.reps}")
    for k, v in med.items():
        ref = med["baseline FO"] if k.endswith("FO") else base
        print(f"  {k:14s} {v:9.1f} ms/meta-iteration   speed-up vs {'baseline FO' if k.endswith('FO') else 'baseline'}"
              f" {ref / v:5.2f}x")
    print(f"fastest second-order: {best} — {base / med[best]:.2f}x the plain per-task autograd loop")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": str(dev), "threads": args.threads, "reps": args.reps, "median_ms": med,
                       "speedup_vs_baseline": {k: (med['baseline FO'] if k.endswith('FO') else base) / v
                                               for k, v in med.items()}, "best_second_order": best}, fh, indent=1)


if __name__ == "__main__":
    main()
