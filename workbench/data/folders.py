"""Image folders on disk: one scanner, one fingerprint, one loader, near-duplicate groups.

Every reader of an image folder goes through here — training (:mod:`.imagefolder`), episodes
(:class:`.episodes.FolderSource`, Omniglot, mini-ImageNet), meta-features and scraping — so they
agree on what an image is, which files a class has and when a folder changed.

- :func:`class_folders` lists ``root/<class>/…`` (``depth=1``) or ``root/<group>/<class>/…``
  (``depth=2``); :func:`scan_folder` applies a command's ``labels`` / ``label_map``.
- :func:`fingerprint` hashes relative paths, sizes and modification times (no reads), so caches
  keyed on it go stale exactly when the folder changes; :func:`describe` is the record a run
  stores about a folder.
- :func:`load_image`: decode → mode → PIL ops → resize, a uint8 ``C×H×W`` array.
- :func:`read_groups`: near-duplicate groups (``dup_group``) from a scraped folder's
  ``manifest.jsonl``; the seeded split keeps each group on one side.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..registry import ConfigError, close_matches

#: File name endings read as images (lower-cased).
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm")
MANIFEST = "manifest.jsonl"
#: Largest manifest read for near-duplicate groups (a row is ~300 bytes: a million images is 300 MB).
MAX_MANIFEST_BYTES = 1 << 30


def is_image(path: Path) -> bool:
    """An image file by name: a known ending, not hidden."""
    return path.suffix.lower() in IMAGE_EXTS and not path.name.startswith(".")


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _images_below(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*") if is_image(f) and f.is_file())


def class_folders(root: str | Path, depth: int = 1) -> list[tuple[str, str, list[Path]]]:
    """``(class name, group, image files)`` per class folder with images, sorted by name.

    ``depth=1``: ``root/<class>/**/<image>`` (group = class). ``depth=2``:
    ``root/<group>/<class>/**/<image>`` (class = ``"<group>/<class>"``, e.g. Omniglot alphabets).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ConfigError("data", f"dataset folder {str(root)!r} does not exist", str(root))
    if depth not in (1, 2):
        raise ValueError(f"depth: expected 1 or 2, got {depth!r}")
    out = []
    for d in _visible_dirs(root):
        if depth == 1:
            files = _images_below(d)
            if files:
                out.append((d.name, d.name, files))
            continue
        for c in _visible_dirs(d):
            files = _images_below(c)
            if files:
                out.append((f"{d.name}/{c.name}", d.name, files))
    return out


def scan_folder(root: str | Path, labels: Sequence[str] | None = None,
                label_map: Mapping[str, str] | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    """Classes and ``(relpath, class index)`` samples of ``root/<class>/<image>``.

    ``label_map`` renames or merges class folders (``{"red_circles": "round", "teal_rings":
    "round"}``); ``labels`` then picks and orders the classes to keep (default: all, sorted).
    """
    root = Path(root).expanduser()
    folders = {name: [f.relative_to(root).as_posix() for f in files] for name, _, files in class_folders(root)}
    label_map = dict(label_map or {})
    for k in label_map:
        if k not in folders:
            raise ConfigError(f"label_map.{k}", f"no class folder {k!r} in {root}", k, sorted(folders),
                              close_matches(k, list(folders)))
    found: dict[str, list[str]] = {}
    for name, files in folders.items():
        found.setdefault(label_map.get(name, name), []).extend(files)
    if labels:
        for i, lab in enumerate(labels):
            if lab not in found:
                raise ConfigError(f"labels[{i}]", f"no images for class {lab!r} in {root}", lab, sorted(found),
                                  close_matches(lab, list(found)))
        classes = list(labels)
    else:
        classes = sorted(found)
    if len(classes) < 2:
        raise ConfigError("data", f"{root} has {len(classes)} class folder(s) with images; a classifier needs"
                          " at least 2 (layout: root/<class>/<image>)", str(root))
    return classes, [(f, ci) for ci, c in enumerate(classes) for f in sorted(found[c])]


def fingerprint(root: str | Path, files: Sequence[str | Path | tuple[str, int]]) -> str:
    """A short hash of relative paths, labels, sizes and modification times (changes with the folder).

    ``files`` are paths (absolute or relative to ``root``) or ``(relpath, class index)`` samples.
    """
    root = Path(root)
    h = hashlib.sha1()
    for item in files:
        rel, label = item if isinstance(item, tuple) else (item, "")
        p = Path(rel) if Path(rel).is_absolute() else root / rel
        st = os.stat(p)
        name = p.relative_to(root).as_posix() if p.is_absolute() and p.is_relative_to(root) else str(rel)
        h.update(f"{name}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def describe(root: str | Path, depth: int = 1) -> dict[str, Any]:
    """What a run record stores about an image folder: where, its classes and counts, its fingerprint."""
    root = Path(root).expanduser().resolve()
    classes = class_folders(root, depth)
    files = [f for _, _, fs in classes for f in fs]
    return {"root": str(root), "name": root.name, "n_images": len(files), "classes": [c for c, _, _ in classes],
            "counts": {c: len(fs) for c, _, fs in classes}, "fingerprint": fingerprint(root, files)}


def load_image(src: Any, channels: int, hw: tuple[int, int], pil_ops: Sequence[Any] = (),
               invert: bool = False) -> np.ndarray:
    """Decode (path or PIL image) → mode → PIL ops → resize: a uint8 ``C×H×W`` array.

    ``pil_ops`` are components (``.name``, ``.params``) of :func:`workbench.registry.pil_ops`;
    ``invert`` turns dark-on-light drawings into ink = 255.
    """
    from PIL import Image

    from ..registry import pil_ops as ops_table

    mode = "RGB" if channels == 3 else "L"
    h, w = hw
    if isinstance(src, Image.Image):
        im = src
    else:
        im = Image.open(src)
        if not pil_ops:
            im.draft(mode, (w, h))  # JPEG: decode at a reduced scale when the target is small
    im = im.convert(mode)
    ops = ops_table() if pil_ops else {}
    for op in pil_ops:
        im = ops[op.name](im, **op.params)
    if im.mode != mode:
        im = im.convert(mode)
    if im.size != (w, h):
        im = im.resize((w, h), Image.BILINEAR)
    arr = np.asarray(im, dtype=np.uint8)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return (255 - arr) if invert else arr.copy()


def read_groups(root: str | Path) -> dict[str, str]:
    """Near-duplicate groups of a scraped folder: relative image path → ``dup_group`` id.

    Read from ``ROOT/manifest.jsonl`` rows carrying ``"dup_group"`` (and ``"path"``, relative to
    ROOT); a folder without a manifest, or rows without the field, have no groups.
    """
    from ..runlog.log import read_jsonl

    path = Path(root).expanduser() / MANIFEST
    if path.is_symlink() or not path.is_file():  # a link (to /dev/zero, to someone's file) is not a manifest
        return {}
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ConfigError("data", f"{path} is {path.stat().st_size:,} bytes; a manifest is at most"
                          f" {MAX_MANIFEST_BYTES:,}", str(path))
    out = {}
    for row in read_jsonl(path):
        group, rel = row.get("dup_group"), row.get("path")
        if isinstance(rel, str) and group not in (None, ""):
            out[Path(rel).as_posix()] = str(group)
    return out


def group_stats(groups: Mapping[str, str], files: Sequence[str]) -> dict[str, int]:
    """How many groups (of two or more images) and grouped images among ``files``."""
    sizes = Counter(groups[f] for f in files if f in groups)
    multi = {g: n for g, n in sizes.items() if n > 1}
    return {"groups": len(multi), "images": sum(multi.values())}
