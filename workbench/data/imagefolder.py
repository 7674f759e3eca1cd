"""Image folders (``root/<class>/<image>``) as a LightningDataModule.

- The split is seeded and stratified per class, and is stored with the run
  (``split.json`` in the run folder + counts and fingerprint in the record), so a test
  run later sees exactly the images training never saw.
- Decoding is the slow part of small-image training, so each image is decoded, put
  through the command's PIL ops and resized **once**; the uint8 result lives in an
  in-memory cache (and, when complete, in ``cache/images/<key>.npy`` so the next run on
  the same folder and size skips decoding entirely). Random transforms run after the
  cache, on tensors, so augmentation still differs every epoch.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from .. import paths
from ..config import Component, ConfigError, TrainingCommand, build_component, close_matches

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def scan_folder(root: str | Path, labels: Sequence[str] | None = None,
                label_map: Mapping[str, str] | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    """Classes and ``(relpath, class index)`` samples of an image folder.

    ``label_map`` (the command's target mapping) renames or merges class folders
    (``{"red_circles": "round", "teal_rings": "round"}``); ``labels`` then picks and orders
    the classes to keep (default: every class, sorted).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ConfigError("data", f"dataset folder {str(root)!r} does not exist", str(root))
    folders = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        files = sorted(f.relative_to(root).as_posix() for f in d.rglob("*")
                       if f.suffix.lower() in IMAGE_EXTS and f.is_file() and not f.name.startswith("."))
        if files:
            folders[d.name] = files
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
    samples = [(f, ci) for ci, c in enumerate(classes) for f in sorted(found[c])]
    return classes, samples


def fingerprint(root: str | Path, samples: Sequence[tuple[str, int]]) -> str:
    """A short hash of the file list, sizes and modification times (changes when the folder does)."""
    h = hashlib.sha1()
    root = Path(root)
    for rel, ci in samples:
        st = os.stat(root / rel)
        h.update(f"{rel}\0{ci}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def stratified_split(samples: Sequence[tuple[str, int]], fractions: Mapping[str, float],
                     seed: int) -> dict[str, list[int]]:
    """Per class, shuffle with ``seed`` and cut into train/val/test (val/test get ≥ 1 image when asked for)."""
    by_class: dict[int, list[int]] = {}
    for i, (_, ci) in enumerate(samples):
        by_class.setdefault(ci, []).append(i)
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for ci in sorted(by_class):
        idx = list(by_class[ci])
        random.Random(f"{seed}-{ci}").shuffle(idx)
        n = len(idx)
        n_val = round(n * fractions.get("val", 0))
        n_test = round(n * fractions.get("test", 0))
        if fractions.get("val", 0) > 0 and n >= 3:
            n_val = max(n_val, 1)
        if fractions.get("test", 0) > 0 and n >= 3:
            n_test = max(n_test, 1)
        while n - n_val - n_test < 1 and (n_val or n_test):
            if n_test >= n_val and n_test:
                n_test -= 1
            else:
                n_val -= 1
        out["val"] += idx[:n_val]
        out["test"] += idx[n_val:n_val + n_test]
        out["train"] += idx[n_val + n_test:]
    return {k: sorted(v) for k, v in out.items()}


def load_image(src: Any, channels: int, hw: tuple[int, int], pil_ops: Sequence[Component] = ()) -> np.ndarray:
    """Decode (path or PIL image) → mode → PIL ops → resize: a uint8 ``C×H×W`` array."""
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
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy()


class ImageCache:
    """Decoded, resized images as one uint8 array, filled on first access.

    When every image has been decoded the array is written to ``cache/images/<key>.npy``;
    the key covers the folder fingerprint, image size, channels and PIL ops, so a changed
    folder or command never reads stale pixels.
    """

    def __init__(self, root: Path, files: Sequence[str], channels: int, hw: tuple[int, int],
                 pil_ops: Sequence[Component], key: str, persist: bool = True, enabled: bool = True) -> None:
        self.root, self.files, self.channels, self.hw, self.pil_ops = root, list(files), channels, hw, list(pil_ops)
        self.enabled = enabled
        persist = persist and enabled
        self.key = key
        self.persist = persist
        self.path = paths.cache_dir() / "images" / f"{key}.npy"
        self._lock = threading.Lock()
        self.array: np.ndarray | None = None
        self.filled = np.zeros(len(self.files), dtype=bool)
        self.decodes = 0
        self.n_filled = 0
        if persist and self.path.is_file():
            try:
                arr = np.load(self.path)
                if arr.shape == (len(self.files), channels, *hw):
                    self.array, self.filled[:] = arr, True
                    self.n_filled = len(self.files)
            except (OSError, ValueError):
                pass  # a torn cache file is only a cache: rebuild it
        if self.array is None:
            shape = (len(self.files), channels, *hw) if enabled else (0, channels, *hw)
            self.array = np.zeros(shape, dtype=np.uint8)

    def get(self, i: int) -> np.ndarray:
        if not self.enabled:  # "cache": false — decode every time (the benchmark's baseline)
            self.decodes += 1
            return load_image(self.root / self.files[i], self.channels, self.hw, self.pil_ops)
        if not self.filled[i]:
            self.array[i] = load_image(self.root / self.files[i], self.channels, self.hw, self.pil_ops)
            self.filled[i] = True
            self.decodes += 1
            self.n_filled += 1
            if self.n_filled == len(self.files):
                self._maybe_save()
        return self.array[i]

    def fill(self) -> None:
        """Decode everything now (used before forking DataLoader workers)."""
        for i in range(len(self.files)):
            self.get(i)
        self._maybe_save()

    def _maybe_save(self) -> None:
        if not self.persist or not self.filled.all() or self.path.is_file():
            return
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, self.array)
            os.replace(tmp, self.path)


class ImageSet(Dataset):
    """A subset of an :class:`ImageCache` with a transform pipeline; items are ``(float image, label)``."""

    def __init__(self, cache: ImageCache, indices: Sequence[int], targets: Sequence[int], transform: Any = None) -> None:
        self.cache, self.indices, self.targets, self.transform = cache, list(indices), list(targets), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        i = self.indices[k]
        x = torch.from_numpy(np.array(self.cache.get(i), copy=True))
        if self.transform is not None:
            x = self.transform(x)
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        return x, self.targets[i]


def build_transform(comps: Sequence[Component], key: str) -> Any:
    """A ``v2.Compose`` of the command's transforms (``None`` when empty)."""
    if not comps:
        return None
    from torchvision.transforms import v2

    from ..registry import transforms

    return v2.Compose([build_component(c, transforms(), f"{key}[{i}]", "transform") for i, c in enumerate(comps)])


class ImageFolderDataModule(pl.LightningDataModule):
    """Seeded stratified train/val/test split of an image folder, with a decoded-image cache.

    Args:
        root: the image folder (``root/<class>/<image>``).
        command: the training command (size, channels, PIL ops, transforms, split, batch size).
        split: a stored split (``{"train": [relpath, …], …}``) to reuse instead of drawing one.
        classes: class order to follow (a trained model's); defaults to the folder's.
    """

    def __init__(self, root: str | Path, command: TrainingCommand | Mapping[str, Any],
                 split: Mapping[str, Sequence[str]] | None = None, classes: Sequence[str] | None = None) -> None:
        super().__init__()
        self.root = Path(root).expanduser().resolve()
        self.command = TrainingCommand.from_dict(command)
        cmd = self.command
        self.classes, self.samples = scan_folder(self.root, classes or cmd.labels, cmd.label_map)
        self.fingerprint = fingerprint(self.root, self.samples)
        if split is not None:
            pos = {rel: i for i, (rel, _) in enumerate(self.samples)}
            missing = [r for part in split.values() for r in part if r not in pos]
            if missing:
                raise ConfigError("data", f"{len(missing)} image(s) of the stored split are missing from"
                                  f" {self.root}, e.g. {missing[0]!r}", missing[0])
            self.split = {k: sorted(pos[r] for r in v) for k, v in split.items()}
        else:
            self.split = stratified_split(self.samples, cmd.split.to_dict(), cmd.seed)
        key = hashlib.sha1(json.dumps([self.fingerprint, cmd.image_hw, cmd.channels,
                                       [c.to_dict() for c in cmd.pil_ops]]).encode()).hexdigest()[:20]
        self.cache = ImageCache(self.root, [r for r, _ in self.samples], cmd.channels, cmd.image_hw, cmd.pil_ops,
                                key, persist=cmd.cache, enabled=cmd.cache)
        self.targets = [ci for _, ci in self.samples]
        self._train_tf = build_transform(cmd.transforms, "transforms")
        self._eval_tf = build_transform(cmd.eval_transforms, "eval_transforms")

    @property
    def n_labels(self) -> int:
        return len(self.classes)

    @property
    def in_shape(self) -> tuple[int, int, int]:
        """Shape of one model input (C, H, W) after the training transforms."""
        x, _ = self.dataset("train")[0] if self.split["train"] else (None, None)
        if x is None:
            return (self.command.channels, *self.command.image_hw)
        return tuple(x.shape)  # type: ignore[return-value]

    def dataset(self, part: str, limit: int | None = None) -> ImageSet:
        idx = self.split.get(part, [])
        if limit is not None:
            idx = sorted(random.Random(self.command.seed).sample(idx, min(limit, len(idx))))
        tf = self._train_tf if part == "train" else self._eval_tf
        return ImageSet(self.cache, idx, self.targets, tf)

    def split_files(self) -> dict[str, list[str]]:
        """The split as relative paths (what ``split.json`` stores)."""
        return {k: [self.samples[i][0] for i in v] for k, v in self.split.items()}

    def info(self) -> dict[str, Any]:
        """What the run record stores about the data: folder, fingerprint, classes, split counts."""
        return {"root": str(self.root), "fingerprint": self.fingerprint, "n_images": len(self.samples),
                "classes": list(self.classes), "label_map": dict(self.command.label_map or {}) or None,
                "split_seed": self.command.seed,
                "split_fractions": self.command.split.to_dict(),
                "split_counts": {k: len(v) for k, v in self.split.items()}, "split_file": "split.json"}

    def _loader(self, part: str, shuffle: bool, limit: int | None = None) -> DataLoader:
        cmd = self.command
        ds = self.dataset(part, limit)
        if cmd.num_workers > 0 and self.cache.enabled:
            self.cache.fill()  # workers are forked: fill first so they share decoded pixels
        g = torch.Generator()
        g.manual_seed(cmd.seed)
        return DataLoader(ds, batch_size=cmd.batch_size, shuffle=shuffle, num_workers=cmd.num_workers,
                          persistent_workers=cmd.num_workers > 0, generator=g if shuffle else None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", shuffle=False) if self.split.get("val") else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False, limit=getattr(self, "test_limit", None))
