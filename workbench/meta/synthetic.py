"""Families of small synthetic image tasks whose best training settings differ.

Tuning needs *many* past tasks that disagree about what works, grouped so that a near
task is better evidence than the average of all of them. Each family below stresses one
thing a recipe must get right; tasks within a family vary its strength:

- ``gratings``: oriented stripes in heavy pixel noise; classes are orientations, mirrored
  pairs included, so a horizontal flip *changes the label* (flip augmentation hurts) and
  noise favours averaging over more samples;
- ``objects``: small shapes at random positions and scales on a cluttered background;
  position is nuisance (translation augmentation and capacity help), shapes are
  left-right symmetric (flips are harmless);
- ``dots``: few-shot-sized classes (many classes, few images) told apart by colour and
  dot count; every spatial transform preserves the label (augmentation against
  overfitting);
- ``glyphs``: characters of one writing system (:mod:`workbench.data.glyphs`); mirrored
  letters exist (b/d, p/q), position varies little.

:func:`write_task` writes ``root/<class>/<n>.png`` once (atomically; a ``.complete``
marker says it is finished) and is a pure function of the task spec and its seed.
"""
from __future__ import annotations

import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["TaskSpec", "FAMILIES", "TASKS", "write_task", "task_spec"]

FAMILIES = ("gratings", "objects", "dots", "glyphs")


@dataclass(frozen=True)
class TaskSpec:
    """One synthetic task: its family, size, class count, images per class and difficulty knobs."""

    name: str
    family: str
    size: int = 24
    n_classes: int = 6
    per_class: int = 50
    noise: float = 0.3
    seed: int = 0
    alphabet: str = ""

    def to_dict(self) -> dict:
        """JSON-ready form (stored with each run)."""
        return asdict(self)


#: The shipped meta-dataset's tasks: 4 families × 4 tasks, differing in size, classes, images
#: per class and noise (the knobs that move the best recipe).
TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("gratings-a", "gratings", size=20, n_classes=6, per_class=40, noise=2.0, seed=1),
    TaskSpec("gratings-b", "gratings", size=24, n_classes=8, per_class=36, noise=2.4, seed=2),
    TaskSpec("gratings-c", "gratings", size=28, n_classes=10, per_class=30, noise=1.8, seed=3),
    TaskSpec("gratings-d", "gratings", size=20, n_classes=8, per_class=45, noise=2.8, seed=4),
    TaskSpec("objects-a", "objects", size=20, n_classes=6, per_class=60, noise=0.6, seed=1),
    TaskSpec("objects-b", "objects", size=28, n_classes=6, per_class=70, noise=0.35, seed=2),
    TaskSpec("objects-c", "objects", size=24, n_classes=5, per_class=60, noise=0.45, seed=3),
    TaskSpec("objects-d", "objects", size=24, n_classes=6, per_class=40, noise=0.8, seed=4),
    TaskSpec("dots-a", "dots", size=16, n_classes=12, per_class=16, noise=0.15, seed=1),
    TaskSpec("dots-b", "dots", size=20, n_classes=16, per_class=14, noise=0.2, seed=2),
    TaskSpec("dots-c", "dots", size=16, n_classes=20, per_class=12, noise=0.25, seed=3),
    TaskSpec("dots-d", "dots", size=20, n_classes=12, per_class=20, noise=0.35, seed=4),
    TaskSpec("glyphs-latin", "glyphs", size=28, n_classes=10, per_class=40, alphabet="Latin", seed=1),
    TaskSpec("glyphs-greek", "glyphs", size=28, n_classes=10, per_class=40, alphabet="Greek", seed=2),
    TaskSpec("glyphs-cyrillic", "glyphs", size=28, n_classes=10, per_class=40, alphabet="Cyrillic", seed=3),
    TaskSpec("glyphs-armenian", "glyphs", size=24, n_classes=12, per_class=30, alphabet="Armenian", seed=4),
)


def task_spec(name: str) -> TaskSpec:
    """The shipped task of that name."""
    for t in TASKS:
        if t.name == name:
            return t
    raise ValueError(f"task {name!r}: unknown; allowed: {', '.join(t.name for t in TASKS)}")


# -- generators: (spec, rng) → uint8 array (n_classes, per_class, H, W, 3) ---------------------------

def _gratings(spec: TaskSpec, rng: np.random.Generator) -> np.ndarray:
    s = spec.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    # orientations spread over (0, π): θ and π-θ (mirror images) are both classes
    angles = (np.arange(spec.n_classes) + 0.5) * math.pi / spec.n_classes
    out = np.zeros((spec.n_classes, spec.per_class, s, s, 3), dtype=np.uint8)
    for c, th in enumerate(angles):
        for i in range(spec.per_class):
            t = th + rng.normal(0, 0.06)
            freq = rng.uniform(2.5, 4.0)
            phase = rng.uniform(0, 2 * math.pi)
            g = np.sin(2 * math.pi * freq * (xx * math.cos(t) + yy * math.sin(t)) + phase)
            tint = rng.uniform(0.6, 1.0, 3)
            img = 0.5 + 0.25 * g[..., None] * tint + spec.noise * 0.25 * rng.standard_normal((s, s, 3))
            out[c, i] = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    return out


def _shape_mask(kind: int, s: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    if kind == 0:  # disc
        return dx ** 2 + dy ** 2 <= r ** 2
    if kind == 1:  # square
        return (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    if kind == 2:  # triangle, apex up
        return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    if kind == 3:  # plus
        return ((np.abs(dx) <= r * 0.3) & (np.abs(dy) <= r)) | ((np.abs(dy) <= r * 0.3) & (np.abs(dx) <= r))
    if kind == 4:  # ring
        d = dx ** 2 + dy ** 2
        return (d <= r ** 2) & (d >= (0.55 * r) ** 2)
    if kind == 5:  # diamond
        return np.abs(dx) + np.abs(dy) <= r
    raise ValueError(kind)


def _objects(spec: TaskSpec, rng: np.random.Generator) -> np.ndarray:
    s = spec.size
    if spec.n_classes > 6:
        raise ValueError(f"objects: at most 6 classes, got {spec.n_classes}")
    out = np.zeros((spec.n_classes, spec.per_class, s, s, 3), dtype=np.uint8)
    for c in range(spec.n_classes):
        for i in range(spec.per_class):
            img = np.ones((s, s, 3), np.float32) * rng.uniform(0.0, 0.3, 3)
            x0, y0 = rng.integers(0, s, 2)  # clutter: one thin bar
            if rng.random() < 0.5:
                img[y0:y0 + rng.integers(3, s // 2), x0:x0 + 1] = rng.uniform(0.3, 0.8, 3)
            else:
                img[y0:y0 + 1, x0:x0 + rng.integers(3, s // 2)] = rng.uniform(0.3, 0.8, 3)
            r = rng.uniform(0.2, 0.3) * s
            cx, cy = rng.uniform(r, s - r, 2)
            img[_shape_mask(c, s, cx, cy, r)] = rng.uniform(0.7, 1.0, 3)
            img += spec.noise * 0.3 * rng.standard_normal((s, s, 3))
            out[c, i] = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    return out


def _dots(spec: TaskSpec, rng: np.random.Generator) -> np.ndarray:
    s = spec.size
    hues = np.linspace(0, 1, max(2, (spec.n_classes + 1) // 2), endpoint=False)
    out = np.zeros((spec.n_classes, spec.per_class, s, s, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    for c in range(spec.n_classes):
        hue = hues[c % len(hues)]
        count = 1 + 2 * (c // len(hues))  # 1 or 3 dots (or 5 …)
        rgb = np.array([0.5 + 0.5 * math.cos(2 * math.pi * (hue + k / 3)) for k in range(3)], np.float32)
        for i in range(spec.per_class):
            img = np.full((s, s, 3), 0.15, np.float32)
            for _ in range(count):
                r = rng.uniform(0.1, 0.16) * s
                cx, cy = rng.uniform(r, s - r, 2)
                img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r ** 2] = rgb * rng.uniform(0.8, 1.0)
            img += spec.noise * 0.3 * rng.standard_normal((s, s, 3))
            out[c, i] = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    return out


def _glyphs(spec: TaskSpec, rng: np.random.Generator) -> np.ndarray:
    from ..data import glyphs

    g = glyphs.load_glyphs(seed=spec.seed, alphabets=[spec.alphabet], max_per_alphabet=spec.n_classes,
                           instances=spec.per_class)
    x = g.images  # (C, N, 28, 28) ink = 255
    if spec.size != x.shape[-1]:
        from PIL import Image

        x = np.stack([[np.asarray(Image.fromarray(im).resize((spec.size, spec.size), Image.BILINEAR))
                       for im in cls] for cls in x])
    return np.repeat(x[..., None], 3, axis=-1)


_GENERATORS = {"gratings": _gratings, "objects": _objects, "dots": _dots, "glyphs": _glyphs}


def write_task(spec: TaskSpec, root: str | os.PathLike) -> Path:
    """Write the task's image folder under ``root/<spec.name>`` (once); return its path."""
    from PIL import Image

    if spec.family not in _GENERATORS:
        raise ValueError(f"family {spec.family!r}: unknown; allowed: {', '.join(_GENERATORS)}")
    out = Path(root).expanduser() / spec.name
    if (out / ".complete").is_file():
        return out
    rng = np.random.default_rng([spec.seed, FAMILIES.index(spec.family)])
    arr = _GENERATORS[spec.family](spec, rng)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for c in range(arr.shape[0]):
        d = tmp / f"class_{c:02d}"
        d.mkdir(parents=True)
        for i in range(arr.shape[1]):
            Image.fromarray(arr[c, i]).save(d / f"{i:03d}.png")
    (tmp / ".complete").write_text("ok")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out
