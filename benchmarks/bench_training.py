"""Baseline training speed on a 1,000-image folder: what the decoded-image cache buys, and
what the run log costs per step.

    python benchmarks/bench_training.py [--images 1000] [--side 256] [--size 32] [--epochs 3]

1. **Cache.** Writes a fresh ImageFolder of ``--images`` JPEGs (``--side`` px, like scraped
   photos) and trains a small CNN for ``--epochs`` epochs at ``--size`` px, timing each
   epoch (train + validation). Epoch 1 decodes and resizes every image; later epochs read
   the in-memory cache. The baseline, in the same run, is the same command with
   ``"cache": false``, which decodes every image every epoch (what a plain torchvision
   ``ImageFolder`` does).
2. **Run-log overhead.** Every ``WorkbenchLogger.log_metrics`` call of the cached run is
   timed; the total is reported as a share of the mean optimizer-step time
   (one ``train_loss`` row per step, epoch rows included).

Results are printed as ratios. The machine is shared: absolute times are noisy.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def photo_like(root: Path, per_class: int, side: int, classes: tuple[str, ...]) -> None:
    """Shapes over smooth noise at 4:3, saved as quality-90 JPEGs: the size and entropy of scraped photos."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(0)
    w, h = side, side * 3 // 4
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
            im = Image.fromarray(noise).resize((w, h), Image.BICUBIC).filter(ImageFilter.GaussianBlur(1))
            im = Image.blend(im, Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)), 0.15)
            d = ImageDraw.Draw(im)
            r = float(rng.uniform(0.2, 0.35)) * h
            cx, cy = float(rng.uniform(r, w - r)), float(rng.uniform(r, h - r))
            col = tuple(int(v) for v in rng.integers(0, 256, 3))
            if c == "circle":
                d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
            elif c == "square":
                d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=col)
            elif c == "triangle":
                d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=col)
            else:
                d.rectangle([cx - r, cy - r / 3, cx + r, cy + r / 3], fill=col)
                d.rectangle([cx - r / 3, cy - r, cx + r / 3, cy + r], fill=col)
            im.save(root / c / f"{i:04d}.jpg", quality=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--side", type=int, default=500, help="width of the generated JPEGs (4:3)")
    ap.add_argument("--size", type=int, default=32, help="training image size")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    home = tempfile.mkdtemp(prefix="bench-training-")
    os.environ["WORKBENCH_HOME"] = home  # a cold decoded-image cache
    import torch

    torch.set_num_threads(args.threads)
    import pytorch_lightning as pl

    sys.path.insert(0, str(HERE.parent / "tests" / "training"))
    from training_support import SHAPES

    from workbench import jobs
    from workbench.runlog import RunLog
    from workbench.runlog.lightning import WorkbenchLogger

    per_class = args.images // args.classes
    data = Path(home) / "folder"
    t0 = time.perf_counter()
    photo_like(data, per_class, args.side, SHAPES[:args.classes])
    print(f"wrote {per_class * args.classes} photo-like JPEGs of {args.side}×{args.side * 3 // 4} px"
          f" in {time.perf_counter() - t0:.1f} s")

    class EpochTimer(pl.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.steps: list[float] = []
            self._t = 0.0
            self._s = 0.0

        def on_train_epoch_start(self, trainer, module) -> None:
            self._t = time.perf_counter()

        def on_train_batch_start(self, trainer, module, batch, idx) -> None:
            self._s = time.perf_counter()

        def on_train_batch_end(self, trainer, module, out, batch, idx) -> None:
            self.steps.append(time.perf_counter() - self._s)

        def on_validation_epoch_end(self, trainer, module) -> None:  # validation closes each epoch
            if not trainer.sanity_checking:
                self.times.append(time.perf_counter() - self._t)

    # time the run log's part of every logging call
    spent = {"step": 0.0, "step_calls": 0, "epoch": 0.0, "epoch_calls": 0}
    real_log_metrics = WorkbenchLogger.log_metrics

    def timed_log_metrics(self, metrics, step=None):
        t = time.perf_counter()
        real_log_metrics(self, metrics, step)
        dt = time.perf_counter() - t
        kind = "epoch" if any(k.startswith("val") for k in metrics) else "step"
        spent[kind] += dt
        spent[kind + "_calls"] += 1

    WorkbenchLogger.log_metrics = timed_log_metrics

    cmd = {
        "image_size": args.size, "batch_size": 32, "epochs": args.epochs, "seed": 0,
        "model": {"layers": [
            {"name": "Conv2d", "params": {"out_channels": 16, "kernel_size": 3, "padding": 1}}, {"name": "ReLU"},
            {"name": "MaxPool2d", "params": {"kernel_size": 2}},
            {"name": "Conv2d", "params": {"out_channels": 32, "kernel_size": 3, "padding": 1}}, {"name": "ReLU"},
            {"name": "AdaptiveMaxPool2d", "params": {"output_size": 1}}, {"name": "Flatten"},
            {"name": "Linear", "params": {"out_features": "n_labels"}}]},
        "optimizer": {"name": "Adam", "params": {"lr": 0.003}},
        "trainer": {"accelerator": "cpu"},
    }
    log = RunLog()
    rows = {}
    for label, cache in (("no cache (baseline)", False), ("cache", True)):
        timer = EpochTimer()
        spent.update(step=0.0, step_calls=0, epoch=0.0, epoch_calls=0)
        res = jobs.run_training({**cmd, "cache": cache, "name": label}, data, log=log, callbacks=[timer])
        rows[label] = (timer, dict(spent), res)
        print(f"{label:>20}: epochs " + ", ".join(f"{t:.2f}" for t in timer.times) + " s"
              f"  (val acc {res['summary'].get('final_val_accuracy', float('nan')):.3f})")

    base, cached = rows["no cache (baseline)"][0], rows["cache"][0]
    e1, e2 = cached.times[0], statistics.median(cached.times[1:])
    print()
    print(f"cache: epoch 1 {e1:.2f} s, later epochs {e2:.2f} s → later epochs {e1 / e2:.1f}× faster"
          f" (target ≥ 3×)")
    b2 = statistics.median(base.times[1:])
    print(f"baseline without cache: later epochs {b2:.2f} s → the cache makes them {b2 / e2:.1f}× faster")
    timer, sp, res = rows["cache"]
    step = statistics.mean(timer.steps)
    per_step_call = sp["step"] / max(sp["step_calls"], 1)
    per_epoch_call = sp["epoch"] / max(sp["epoch_calls"], 1)
    total = sum(timer.times)
    print(f"run log, per step: {sp['step_calls']} train_loss rows, {per_step_call * 1e6:.0f} µs each; mean step"
          f" {step * 1e3:.2f} ms → overhead {per_step_call / step * 100:.2f}% of step time (target < 1%)")
    print(f"run log, per epoch: {sp['epoch_calls']} validation rows (record update + fsync), {per_epoch_call * 1e3:.1f} ms"
          f" each; all logging = {(sp['step'] + sp['epoch']) / total * 100:.2f}% of training time")


if __name__ == "__main__":
    main()
