"""Task meta-features: a fixed-length description of an image-folder dataset.

Used to find the past tasks most like a new one (:mod:`workbench.meta.recommend`).
Three groups, all cheap (a sample of at most ``per_class`` images per class):

- counts: classes, images per class (mean, min, spread), total images;
- image statistics: size, aspect ratio, share of grayscale images, mean/std intensity,
  colourfulness, edge density (mean absolute gradient);
- an embedding from a fixed backbone (Conv-4, 32 filters, random init with seed 0,
  or any backbone you pass, e.g. a meta-trained one): the mean image embedding
  (direction only) plus two *landmarkers* that measure difficulty — leave-one-out
  nearest-centroid accuracy above chance and the between/within-class spread ratio.

Results are cached under ``cache_dir()/task_features`` keyed by the folder's file
list (names, sizes, mtimes) and the settings, so a changed folder is re-described.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from .. import paths
from .common import stable_hash

__all__ = ["task_features", "feature_table", "folder_fingerprint", "list_image_folder", "SCALAR_KEYS", "IMAGE_EXTS"]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm")

#: The scalar meta-features, in vector order.
SCALAR_KEYS = ("log_classes", "log_images_per_class", "images_per_class_cv", "log_min_images_per_class",
               "log_width", "log_height", "size_cv", "aspect", "gray_share", "pixel_mean", "pixel_std",
               "colourfulness", "edge_density", "nc_accuracy_above_chance", "spread_ratio")

FEATURE_VERSION = 1
EMBED_SIDE = 32


def list_image_folder(root: str | os.PathLike) -> dict[str, list[Path]]:
    """Class name → sorted image files of an ImageFolder-style tree (``root/<class>/<image>``)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {str(root)!r} does not exist")
    classes: dict[str, list[Path]] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in d.rglob("*") if f.suffix.lower() in IMAGE_EXTS and f.is_file())
        if files:
            classes[d.name] = files
    if len(classes) < 2:
        raise ValueError(f"dataset folder {str(root)!r}: found {len(classes)} class folder(s) with images; "
                         f"expected ≥ 2 sub-folders of images ({', '.join(IMAGE_EXTS[:4])}, …)")
    return classes


def folder_fingerprint(root: str | os.PathLike) -> str:
    """Hash of an image folder's file names, sizes and modification times (cheap: no reads)."""
    items = []
    for cls, files in list_image_folder(root).items():
        for f in files:
            st = f.stat()
            items.append((cls, f.name, st.st_size, st.st_mtime_ns))
    return stable_hash(items, 16)


def _sample(files: list[Path], k: int) -> list[Path]:
    """``k`` evenly spaced files (deterministic, covers the whole class)."""
    if len(files) <= k:
        return list(files)
    step = len(files) / k
    return [files[int(i * step)] for i in range(k)]


def _default_backbone():
    import torch

    from ..nets.backbones import conv4

    g = torch.random.get_rng_state()
    torch.manual_seed(0)  # fixed random features: the same for every task, every machine
    net = conv4(in_channels=3, n_out=0, hidden=32, image_size=EMBED_SIDE).eval()
    torch.random.set_rng_state(g)
    return lambda x: net.features[:-1](x).mean(dim=(2, 3))  # global average pool → 32-d


def task_features(root: str | os.PathLike, per_class: int = 20, backbone: Callable | None = None,
                  cache: bool = True) -> dict[str, Any]:
    """Describe an image-folder dataset: ``{"scalars": {...}, "embedding": [...], "fingerprint", ...}``.

    Args:
        root: ``root/<class>/<image>`` folder.
        per_class: images sampled per class.
        backbone: a callable mapping a float tensor ``(N, 3, 32, 32)`` in [0, 1] to ``(N, D)``
            (default: a fixed random Conv-4); a custom one disables the cache.
        cache: read/write the cache in ``cache_dir()/task_features``.
    """
    import numpy as np
    import torch
    from PIL import Image

    root = Path(root).expanduser().resolve()
    classes = list_image_folder(root)
    fp = folder_fingerprint(root)
    key = stable_hash({"fp": fp, "per_class": per_class, "v": FEATURE_VERSION})
    cfile = paths.cache_dir() / "task_features" / f"{key}.json"
    if cache and backbone is None and cfile.is_file():
        try:
            return json.loads(cfile.read_text())
        except (OSError, json.JSONDecodeError):
            pass  # rebuilt below
    counts = np.array([len(f) for f in classes.values()], dtype=float)
    widths, heights, gray, arrays, labels = [], [], [], [], []
    for ci, files in enumerate(classes.values()):
        for f in _sample(files, per_class):
            try:
                with Image.open(f) as im:
                    widths.append(im.width)
                    heights.append(im.height)
                    rgb = im.convert("RGB").resize((EMBED_SIDE, EMBED_SIDE), Image.BILINEAR)
            except (OSError, ValueError):
                continue  # unreadable file: a dataset problem, not a meta-feature
            a = np.asarray(rgb, dtype=np.float32) / 255.0
            gray.append(float(np.abs(a[..., 0] - a[..., 1]).max() < 0.02 and np.abs(a[..., 1] - a[..., 2]).max() < 0.02))
            arrays.append(a)
            labels.append(ci)
    if len(arrays) < 4:
        raise ValueError(f"dataset folder {str(root)!r}: only {len(arrays)} readable images")
    x = np.stack(arrays)  # N, H, W, 3
    lum = x.mean(axis=3)
    gx = np.abs(np.diff(lum, axis=2)).mean()
    gy = np.abs(np.diff(lum, axis=1)).mean()
    w = np.array(widths, dtype=float)
    h = np.array(heights, dtype=float)
    area = w * h
    feats: dict[str, float] = {
        "log_classes": math.log(len(classes)),
        "log_images_per_class": math.log(counts.mean()),
        "images_per_class_cv": float(counts.std() / counts.mean()),
        "log_min_images_per_class": math.log(counts.min()),
        "log_width": float(np.log(w).mean()),
        "log_height": float(np.log(h).mean()),
        "size_cv": float(area.std() / area.mean()),
        "aspect": float((w / h).mean()),
        "gray_share": float(np.mean(gray)),
        "pixel_mean": float(lum.mean()),
        "pixel_std": float(lum.std()),
        "colourfulness": float(x.std(axis=3).mean()),
        "edge_density": float(gx + gy),
    }
    embed_fn = backbone or _default_backbone()
    with torch.no_grad():
        t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        emb = torch.cat([embed_fn(t[i:i + 256]) for i in range(0, len(t), 256)]).numpy().astype(np.float64)
    y = np.array(labels)
    # landmarkers: how separable the classes already are in a fixed embedding
    z = (emb - emb.mean(0)) / (emb.std(0) + 1e-8)
    cents = np.stack([z[y == c].mean(0) for c in range(len(classes))])
    correct = 0
    for i in range(len(z)):
        c = y[i]
        n_c = (y == c).sum()
        own = (cents[c] * n_c - z[i]) / max(n_c - 1, 1)  # leave the image out of its own centroid
        cs = cents.copy()
        cs[c] = own
        correct += int(np.argmin(((cs - z[i]) ** 2).sum(1)) == c)
    acc = correct / len(z)
    chance = 1 / len(classes)
    feats["nc_accuracy_above_chance"] = float((acc - chance) / (1 - chance))
    within = float(np.mean([((z[y == c] - cents[c]) ** 2).sum(1).mean() for c in range(len(classes))]))
    between = float(((cents - z.mean(0)) ** 2).sum(1).mean())
    feats["spread_ratio"] = float(between / (within + 1e-8))
    mean_emb = emb.mean(0)
    mean_emb = mean_emb / (np.linalg.norm(mean_emb) + 1e-12)
    out = {"path": str(root), "fingerprint": fp, "version": FEATURE_VERSION, "n_classes": len(classes),
           "n_images": int(counts.sum()), "n_sampled": int(len(z)),
           "scalars": {k: feats[k] for k in SCALAR_KEYS},
           "embedding": [round(float(v), 6) for v in mean_emb],
           "backbone": "conv4-random-seed0" if backbone is None else getattr(backbone, "__name__", "custom")}
    if cache and backbone is None:
        cfile.parent.mkdir(parents=True, exist_ok=True)
        tmp = cfile.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(out))
        os.replace(tmp, cfile)
    return out


def feature_table(features: Mapping[str, Mapping[str, Any]]):
    """DataFrame of scalar meta-features, one row per task name."""
    import pandas as pd

    return pd.DataFrame({name: f["scalars"] for name, f in features.items()}).T[list(SCALAR_KEYS)]
