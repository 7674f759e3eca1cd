"""Task meta-features: a fixed-length description of an image-folder dataset.

Used to find the past tasks most like a new one (:mod:`workbench.meta.recommend`).
Three groups, all cheap (a sample of at most ``per_class`` images per class):

- counts: classes, images per class (mean, min, spread), total images;
- image statistics: size, aspect ratio, share of grayscale images, mean/std intensity,
  colourfulness, edge density (mean absolute gradient);
- for a scraped dataset, its text (``text``: queries, labels, related searches and chips,
  :func:`workbench.scrape.task_text`), which the warm start's neighbour search can weigh next to
  the image features (:func:`workbench.meta.warmstart.neighbour_distances`);
- an embedding from a fixed backbone (Conv-4, 32 filters, random init with seed 0,
  or any backbone you pass, e.g. a meta-trained one): the mean image embedding
  (direction only) plus two *landmarkers* that measure difficulty — leave-one-out
  nearest-centroid accuracy above chance and the between/within-class spread ratio.

Folders are read through :mod:`workbench.data.folders` (the one scanner, fingerprint and
loader). Results are cached under ``cache_dir()/task_features`` keyed by the folder's
fingerprint and the settings, so a changed folder is re-described.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from .. import paths
from ..data import folders
from .common import stable_hash

__all__ = ["task_features", "feature_table", "folder_fingerprint", "list_image_folder", "SCALAR_KEYS", "IMAGE_EXTS"]

IMAGE_EXTS = folders.IMAGE_EXTS

#: The scalar meta-features, in vector order.
SCALAR_KEYS = ("log_classes", "log_images_per_class", "images_per_class_cv", "log_min_images_per_class",
               "log_width", "log_height", "size_cv", "aspect", "gray_share", "pixel_mean", "pixel_std",
               "colourfulness", "edge_density", "nc_accuracy_above_chance", "spread_ratio")

FEATURE_VERSION = 1
EMBED_SIDE = 32


def list_image_folder(root: str | os.PathLike) -> dict[str, list[Path]]:
    """Class name → sorted image files of an ImageFolder-style tree (``root/<class>/<image>``)."""
    try:
        classes = {name: files for name, _, files in folders.class_folders(root)}
    except ValueError as exc:  # no such folder
        raise FileNotFoundError(str(exc).split(": ", 1)[-1]) from None
    if len(classes) < 2:
        raise ValueError(f"dataset folder {str(root)!r}: found {len(classes)} class folder(s) with images; "
                         f"expected ≥ 2 sub-folders of images ({', '.join(IMAGE_EXTS[:4])}, …)")
    return classes


def folder_fingerprint(root: str | os.PathLike) -> str:
    """The folder's fingerprint (:func:`workbench.data.folders.fingerprint`: names, sizes, mtimes)."""
    root = Path(root).expanduser().resolve()
    return folders.fingerprint(root, [f.resolve() for fs in list_image_folder(root).values() for f in fs])


def _sample(files: list[Path], k: int) -> list[Path]:
    """``k`` evenly spaced files (deterministic, covers the whole class)."""
    if len(files) <= k:
        return list(files)
    step = len(files) / k
    return [files[int(i * step)] for i in range(k)]


def _read_sample(classes: Mapping[str, list[Path]], per_class: int) -> tuple[list, list, list, list, list]:
    """Sizes, grayscale flags, 32×32 RGB arrays in [0, 1] and labels of up to ``per_class`` images a class."""
    import numpy as np
    from PIL import Image

    widths, heights, gray, arrays, labels = [], [], [], [], []
    for ci, files in enumerate(classes.values()):
        for f in _sample(files, per_class):
            try:
                with Image.open(f) as im:
                    size = im.size
                    chw = folders.load_image(im, 3, (EMBED_SIDE, EMBED_SIDE))
            except (OSError, ValueError):
                continue  # unreadable file: a dataset problem, not a meta-feature
            widths.append(size[0])
            heights.append(size[1])
            a = chw.transpose(1, 2, 0).astype(np.float32) / 255.0
            gray.append(float(np.abs(a[..., 0] - a[..., 1]).max() < 0.02 and np.abs(a[..., 1] - a[..., 2]).max() < 0.02))
            arrays.append(a)
            labels.append(ci)
    return widths, heights, gray, arrays, labels


def _default_backbone():
    from .. import runtime
    from ..nets.backbones import conv4

    with runtime.seeded(0):  # fixed random features: the same for every task, every machine, any company
        net = conv4(in_channels=3, n_out=0, hidden=32, image_size=EMBED_SIDE).eval()
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

    root = Path(root).expanduser().resolve()
    classes = list_image_folder(root)
    fp = folder_fingerprint(root)
    key = stable_hash({"fp": fp, "per_class": per_class, "v": FEATURE_VERSION})
    cfile = paths.cache_dir() / "task_features" / f"{key}.json"
    if cache and backbone is None and cfile.is_file():
        try:
            return _with_text(json.loads(cfile.read_text()), root)
        except (OSError, json.JSONDecodeError):
            pass  # rebuilt below
    counts = np.array([len(f) for f in classes.values()], dtype=float)
    widths, heights, gray, arrays, labels = _read_sample(classes, per_class)
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
    acc = _loo_nearest_centroid(z, y)
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
        with paths.replacing(cfile) as tmp:
            tmp.write_text(json.dumps(out))
    return _with_text(out, root)


def _with_text(feats: dict, root: Path) -> dict:
    """Add a scraped folder's text (read each time: a resumed scrape adds related searches)."""
    from ..scrape import task_text

    text = task_text(root)
    if text:
        feats["text"] = text
    return feats


def _loo_nearest_centroid(z, y) -> float:
    """Leave-one-out accuracy of the nearest-centroid classifier, in closed form.

    Equal to scikit-learn's ``cross_val_score(NearestCentroid(), z, y, cv=LeaveOneOut())``
    (``tests/meta`` checks it) without its N refits (~10 ms each: 2.4 s for 200 images here, this
    takes a millisecond): leaving image i out of its class's n images moves that centroid so
    the squared distance to it grows by (n / (n-1))²; a class of one image is then absent.
    """
    import numpy as np

    y = np.asarray(y)
    cents = np.stack([z[y == c].mean(0) for c in range(int(y.max()) + 1)])
    d = ((z[:, None, :] - cents[None]) ** 2).sum(-1)
    n = np.bincount(y)[y].astype(float)
    rows = np.arange(len(y))
    d[rows, y] = np.where(n > 1, d[rows, y] * (n / np.maximum(n - 1, 1)) ** 2, np.inf)
    return float((d.argmin(1) == y).mean())


def feature_table(features: Mapping[str, Mapping[str, Any]]):
    """DataFrame of scalar meta-features, one row per task name."""
    import pandas as pd

    return pd.DataFrame({name: f["scalars"] for name, f in features.items()}).T[list(SCALAR_KEYS)]
