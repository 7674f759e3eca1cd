"""What per-job randomness costs: training with the workbench's seeded sections vs drawing from
torch's global RNG directly (what jobs did before, and what made concurrent runs differ).

    python benchmarks/bench_seeded.py [--images 1000] [--size 32] [--epochs 4] [--repeats 2]

Trains the same command — random horizontal flips, random resized crops and a dropout layer —
on a photo-like folder (``bench_training.photo_like``), with the decoded-image cache warm, in two
modes interleaved ``--repeats`` times in one process:

- **seeded** (the workbench): each sample's transforms run inside ``runtime.seeded`` (a lock
  around ``torch.random.fork_rng``) with a seed from the job's sampler, each dropout call draws a
  seed from the layer's own generator;
- **global RNG** (baseline): ``runtime.seeded`` replaced by a no-op, so transforms and dropout
  draw from the process-wide generator as plain torch code does.

Prints the median time of the later epochs (train + validation) per mode and the ratio, and
checks that two seeded runs gave the same per-step losses. One intra-op thread; the machine is
shared, so absolute times are noisy.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    os.environ["WORKBENCH_HOME"] = tempfile.mkdtemp(prefix="bench-seeded-")
    import torch

    torch.set_num_threads(1)
    import pytorch_lightning as pl

    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent / "tests" / "training"))
    from bench_training import photo_like
    from training_support import SHAPES

    from workbench import jobs, runtime
    from workbench.runlog import RunLog

    data = Path(os.environ["WORKBENCH_HOME"]) / "folder"
    photo_like(data, args.images // 4, 320, SHAPES[:4])

    class EpochTimer(pl.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_train_epoch_start(self, trainer, module) -> None:
            self._t = time.perf_counter()

        def on_validation_epoch_end(self, trainer, module) -> None:
            if not trainer.sanity_checking:
                self.times.append(time.perf_counter() - self._t)

    cmd = {"image_size": args.size, "batch_size": 32, "epochs": args.epochs, "seed": 0, "threads": 1,
           "transforms": [{"name": "RandomHorizontalFlip", "params": {"p": 0.5}},
                          {"name": "RandomResizedCrop", "params": {"size": args.size, "scale": [0.7, 1.0]}}],
           "model": {"layers": [
               {"name": "Conv2d", "params": {"out_channels": 16, "kernel_size": 3, "padding": 1}}, {"name": "ReLU"},
               {"name": "MaxPool2d", "params": {"kernel_size": 2}},
               {"name": "Conv2d", "params": {"out_channels": 32, "kernel_size": 3, "padding": 1}}, {"name": "ReLU"},
               {"name": "AdaptiveMaxPool2d", "params": {"output_size": 1}}, {"name": "Flatten"},
               {"name": "Dropout", "params": {"p": 0.3}}, {"name": "Linear", "params": {"out_features": "n_labels"}}]},
           "optimizer": {"name": "Adam", "params": {"lr": 0.003}}, "trainer": {"accelerator": "cpu"}}
    log = RunLog()
    jobs.run_training({**cmd, "epochs": 1, "name": "warm the cache"}, data, log=log)

    @contextlib.contextmanager
    def unseeded(seed, device=None):  # the baseline: no lock, no fork, no reseed
        yield

    real = runtime.seeded
    times: dict[str, list[float]] = {"seeded": [], "global RNG": []}
    losses = []
    for _ in range(args.repeats):
        for mode in times:
            runtime.seeded = unseeded if mode == "global RNG" else real  # every caller looks it up there
            try:
                timer = EpochTimer()
                res = jobs.run_training({**cmd, "name": mode}, data, log=log, callbacks=[timer])
            finally:
                runtime.seeded = real
            times[mode] += timer.times[1:]
            if mode == "seeded":
                losses.append([m["train_loss"] for m in log.get(res["run_id"])["metrics"] if "train_loss" in m])
            print(f"{mode:>10}: epochs " + ", ".join(f"{t:.2f}" for t in timer.times) + " s", flush=True)
    med = {m: statistics.median(t) for m, t in times.items()}
    print()
    print(f"later epochs, median: seeded {med['seeded']:.3f} s, global RNG {med['global RNG']:.3f} s"
          f" → per-job randomness costs {med['seeded'] / med['global RNG']:.3f}× ({args.images} images,"
          f" {args.size} px, flips + crops + dropout)")
    print(f"seeded runs reproduce: {all(x == losses[0] for x in losses)} ({len(losses)} runs, {len(losses[0])} steps)")


if __name__ == "__main__":
    main()
