"""Synthetic runs and image folders for the meta-analysis tests (no training needed)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest


def synth_curve(steps: int, lr: float, seed: int = 0, kind: str = "ok") -> list[float]:
    """A noisy training-loss curve: decays at a rate set by lr; explodes, stalls or NaNs on request."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    rate = min(lr, 0.5) * 8 / steps
    base = 0.3 + 2.0 * np.exp(-rate * t * 10)
    if kind == "flat":
        base = np.full(steps, 2.3)
    curve = base * (1 + 0.05 * rng.standard_normal(steps))
    if kind == "explode":
        start = steps // 10
        curve[start:] = curve[start] * np.exp(0.15 * (t[start:] - start))
    if kind == "nan":
        curve[steps // 8:] = math.nan
    return [float(x) for x in curve]


def add_run(log, name, config, losses, score=None, status="completed", tags=(), dataset=None, epochs=None,
            **fields):
    """Write one finished run with a loss curve into ``log`` and return its id."""
    run = log.start(name, config.get("kind", "baseline"), config, tags=list(tags), dataset=dataset)
    for i, v in enumerate(losses):
        run.log_metrics({"train_loss": v}, step=i, epoch=i * (epochs or 1) // max(len(losses), 1))
    for e, row in enumerate(epochs_rows(losses, epochs or 0)):
        run.log_epoch(e, row)
    if fields:
        run.update(**fields)
    summary = {"test_accuracy": score} if score is not None else {}
    run.finish(status, summary=summary)
    return run.id


def epochs_rows(losses, n):
    out = []
    for e in range(n):
        chunk = losses[e * len(losses) // n:(e + 1) * len(losses) // n]
        finite = [x for x in chunk if x == x]
        out.append({"val_loss": float(np.mean(finite)) if finite else float("nan")})
    return out


def write_folder(root: Path, style: str, n_classes: int = 4, per_class: int = 8, size: int = 28,
                 seed: int = 0) -> Path:
    """A tiny ImageFolder: 'strokes' (gray lines on black), 'blobs' (colour discs), 'noise' (RGB noise)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for c in range(n_classes):
        d = root / f"class_{c}"
        d.mkdir(parents=True, exist_ok=True)
        angle = c * math.pi / n_classes
        colour = tuple(int(x) for x in rng.integers(40, 255, 3))
        for i in range(per_class):
            if style == "strokes":
                im = Image.new("L", (size, size), 0)
                dr = ImageDraw.Draw(im)
                cx, cy = size / 2 + rng.normal(0, 1.5), size / 2 + rng.normal(0, 1.5)
                dx, dy = math.cos(angle) * size * 0.4, math.sin(angle) * size * 0.4
                dr.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255, width=3)
            elif style == "blobs":
                im = Image.new("RGB", (size, size), (200, 220, 240))
                dr = ImageDraw.Draw(im)
                r = size * (0.15 + 0.05 * c) + rng.normal(0, 1)
                cx, cy = size / 2 + rng.normal(0, 3), size / 2 + rng.normal(0, 3)
                dr.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
            elif style == "noise":
                a = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
                a[..., c % 3] = np.clip(a[..., c % 3].astype(int) + 60, 0, 255)
                im = Image.fromarray(a)
            else:
                raise ValueError(style)
            im.save(d / f"img_{i:03d}.png")
    return root


@pytest.fixture()
def synth():
    """Helpers: ``synth.curve``, ``synth.add_run``, ``synth.folder``."""
    class S:
        curve = staticmethod(synth_curve)
        add_run = staticmethod(add_run)
        folder = staticmethod(write_folder)
        past_runs = staticmethod(past_runs)
    return S


@pytest.fixture()
def tasks(tmp_path):
    """Three past tasks of different looks plus two new tasks that resemble A and B."""
    f = write_folder
    return {
        "A": f(tmp_path / "A-strokes", "strokes", n_classes=5, seed=0),
        "B": f(tmp_path / "B-blobs", "blobs", n_classes=4, size=40, seed=0),
        "C": f(tmp_path / "C-noise", "noise", n_classes=3, size=32, seed=0),
        "A2": f(tmp_path / "A2-strokes", "strokes", n_classes=5, seed=1),
        "B2": f(tmp_path / "B2-blobs", "blobs", n_classes=4, size=40, seed=1),
    }


def _cfg(path, lr, bs=32):
    return {"kind": "baseline", "data": str(path), "seed": 0, "batch_size": bs, "name": f"lr{lr}",
            "labels": [f"class_{i}" for i in range(3)],
            "optimizer": {"name": "Adam", "params": {"lr": lr}}, "model": {"preset": "small_cnn", "params": {}}}


def past_runs(runlog, tasks):
    """On A (strokes) lr=1e-2 wins, on B (blobs) lr=1e-3 wins, on C it is a tie."""
    table = {"A": {1e-2: 0.9, 1e-3: 0.5, 1e-4: 0.3}, "B": {1e-2: 0.4, 1e-3: 0.9, 1e-4: 0.6},
             "C": {1e-2: 0.6, 1e-3: 0.6, 1e-4: 0.2}}
    for t, scores in table.items():
        for lr, s in scores.items():
            add_run(runlog, f"{t}-lr{lr}", _cfg(tasks[t], lr), [2.0, 1.0], s, dataset={"root": str(tasks[t])})
    # noise the index must ignore: an unfinished run and a run without a score
    r = runlog.start("running", "baseline", _cfg(tasks["A"], 5.0))
    add_run(runlog, "unscored", _cfg(tasks["B"], 5.0), [2.0, 1.0], None)
    return r
