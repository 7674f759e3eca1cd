"""Support for the training tests (and the benchmark): a Pillow-drawn shapes folder and a fast command.

A uniquely named module rather than ``conftest``: test files import from it, and several
``conftest`` modules exist in the suite."""
from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross")


def make_shapes(root: str | Path, per_class: int = 20, size: int = 32, classes: tuple[str, ...] = SHAPES,
                seed: int = 0, fmt: str = "png") -> Path:
    """Write ``root/<shape>/<i>.<fmt>``: a random-coloured shape at a random place and scale on noise."""
    root = Path(root)
    rng = random.Random(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            bg = tuple(rng.randrange(0, 90) for _ in range(3))
            im = Image.new("RGB", (size, size), bg)
            d = ImageDraw.Draw(im)
            r = rng.uniform(0.25, 0.4) * size
            cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
            col = tuple(rng.randrange(150, 256) for _ in range(3))
            if c == "circle":
                d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
            elif c == "square":
                d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=col)
            elif c == "triangle":
                d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=col)
            else:
                w = max(2, r / 3)
                d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=col)
                d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=col)
            im.save(root / c / f"{i:04d}.{fmt}")
    return root


def fast_command(**over) -> dict:
    """A small conv net that learns the shapes in a few seconds on one CPU thread."""
    cmd = {
        "name": "fast",
        "image_size": 24,
        "model": {"layers": [
            {"name": "Conv2d", "params": {"in_channels": "auto", "out_channels": 16, "kernel_size": 3, "padding": 1}},
            {"name": "ReLU"},
            {"name": "MaxPool2d", "params": {"kernel_size": 2}},
            {"name": "Conv2d", "params": {"in_channels": "auto", "out_channels": 32, "kernel_size": 3, "padding": 1}},
            {"name": "ReLU"},
            {"name": "AdaptiveMaxPool2d", "params": {"output_size": 1}},
            {"name": "Flatten"},
            {"name": "Linear", "params": {"in_features": "auto", "out_features": "n_labels"}},
        ]},
        "optimizer": {"name": "Adam", "params": {"lr": 0.005}},
        "batch_size": 16,
        "epochs": 6,
        "seed": 0,
        "trainer": {"accelerator": "cpu"},
    }
    cmd.update(over)
    return cmd
