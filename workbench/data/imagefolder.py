"""Image folders (``root/<class>/<image>``) as a LightningDataModule.

- The split is seeded and stratified per class, keeps near-duplicate groups (a scraped folder's
  ``dup_group``) on one side, and is stored with the run (``split.json`` in the run folder +
  counts and fingerprint in the record), so a test run later sees exactly the images training
  never saw.
- Decoding is the slow part of small-image training, so each image is decoded, put through the
  command's PIL ops and resized **once** (:func:`workbench.data.folders.load_image`); the uint8
  result lives in an in-memory cache (and, when complete, in ``cache/images/<key>.npy`` so the
  next run on the same folder and size skips decoding entirely). Random transforms run after
  the cache, on tensors, so augmentation still differs every epoch.
- Reproducible in any company: the training order and each sample's augmentation seed come
  from the job's own generator (:class:`SeededShuffle`), and a transform runs inside
  :func:`workbench.runtime.seeded` with that seed — never on torch's free-running global RNG,
  which other jobs in the process share.

The command is any object with the training command's fields (``image_hw``, ``channels``,
``pil_ops``, ``transforms``, ``eval_transforms``, ``split``, ``seed``, ``labels``, ``label_map``,
``batch_size``, ``num_workers``, ``cache``): :class:`workbench.commands.TrainingCommand`.
"""
from __future__ import annotations

import hashlib
import json
import random
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .. import paths, runtime
from ..registry import ConfigError, build_component
from .folders import fingerprint, group_stats, load_image, read_groups, scan_folder
from .resumable import ResumableDataLoader

__all__ = ["ImageFolderDataModule", "ImageCache", "ImageSet", "SeededShuffle", "stratified_split",
           "build_transform", "load_image", "scan_folder"]


def _quota(n: int, fractions: Mapping[str, float]) -> tuple[int, int]:
    """Images of an ``n``-image class for val and test (each ≥ 1 when asked for; ≥ 1 left to train)."""
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
    return n_val, n_test


def stratified_split(samples: Sequence[tuple[str, int]], fractions: Mapping[str, float], seed: int,
                     groups: Mapping[str, str] | None = None) -> dict[str, list[int]]:
    """Per class, shuffle with ``seed`` and cut into train/val/test (val/test get ≥ 1 image when asked).

    ``groups`` (relative path → group id) moves every near-duplicate group as one unit: a group
    lands wholly in one part, also when it spans classes (the class met first decides).
    """
    groups = groups or {}
    by_class: dict[int, list[int]] = {}
    for i, (_, ci) in enumerate(samples):
        by_class.setdefault(ci, []).append(i)
    placed: dict[str, str] = {}  # group id → part
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for ci in sorted(by_class):
        units: dict[Any, list[int]] = {}
        for i in by_class[ci]:
            units.setdefault(groups.get(samples[i][0], ("image", i)), []).append(i)
        order = list(units.items())
        random.Random(f"{seed}-{ci}").shuffle(order)  # ungrouped: the same draw as a plain shuffle
        n_val, n_test = _quota(len(by_class[ci]), fractions)
        parts: dict[str, list[int]] = {"val": [], "test": [], "train": []}
        free = []
        for key, members in order:
            if isinstance(key, str) and key in placed:
                parts[placed[key]] += members
            else:
                free.append((key, members))
        last = None
        for key, members in free:
            part = "val" if len(parts["val"]) < n_val else "test" if len(parts["test"]) < n_test else "train"
            parts[part] += members
            last = (key, members, part)
            if isinstance(key, str):
                placed[key] = part
        if not parts["train"] and last is not None and last[2] != "train":  # big groups took every image
            key, members, part = last
            parts[part] = [i for i in parts[part] if i not in members]
            parts["train"] += members
            if isinstance(key, str):
                placed[key] = "train"
        for k in out:
            out[k] += parts[k]
    return {k: sorted(v) for k, v in out.items()}


class ImageCache:
    """Decoded, resized images as one uint8 array, filled on first access.

    When every image has been decoded the array is written to ``cache/images/<key>.npy``;
    the key covers the folder fingerprint, image size, channels and PIL ops, so a changed
    folder or command never reads stale pixels.
    """

    def __init__(self, root: Path, files: Sequence[str], channels: int, hw: tuple[int, int],
                 pil_ops: Sequence[Any], key: str, persist: bool = True, enabled: bool = True) -> None:
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
                arr = np.load(self.path)  # allow_pickle=False: numpy's default, never an object array
                if arr.shape == (len(self.files), channels, *hw) and arr.dtype == np.uint8:
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
            with paths.replacing(self.path) as tmp, open(tmp, "wb") as fh:
                np.save(fh, self.array)


class SeededShuffle(Sampler):
    """A new order every epoch, and a seed for every sample's augmentation, from one generator.

    Yields ``(index, seed)`` pairs: :class:`ImageSet` applies its random transforms under that
    seed, so augmentation is a pure function of the job's seed and the epoch — in the training
    thread and in DataLoader worker processes alike.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.generator = runtime.generator(seed)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = torch.randperm(self.n, generator=self.generator).tolist()
        seeds = torch.randint(0, 2 ** 62, (self.n,), generator=self.generator).tolist()
        return iter(zip(order, seeds))


class ImageSet(Dataset):
    """A subset of an :class:`ImageCache` with a transform pipeline; items are ``(float image, label)``.

    Indexed by position ``k`` (the transform seed is then derived from ``seed`` and ``k``) or
    by a ``(k, seed)`` pair from :class:`SeededShuffle`.
    """

    def __init__(self, cache: ImageCache, indices: Sequence[int], targets: Sequence[int], transform: Any = None,
                 seed: int = 0) -> None:
        self.cache, self.indices, self.targets, self.transform = cache, list(indices), list(targets), transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        k, draw = item if isinstance(item, tuple) else (item, None)
        i = self.indices[k]
        x = torch.from_numpy(np.array(self.cache.get(i), copy=True))
        if self.transform is not None:
            with runtime.seeded(runtime.derive_seed(self.seed, "item", k) if draw is None else draw):
                x = self.transform(x)
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        return x, self.targets[i]


def build_transform(comps: Sequence[Any], key: str) -> Any:
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
        command: the parsed training command (size, channels, PIL ops, transforms, split, batch size).
        split: a stored split (``{"train": [relpath, …], …}``) to reuse instead of drawing one.
        classes: class order to follow (a trained model's); defaults to the folder's.
    """

    def __init__(self, root: str | Path, command: Any, split: Mapping[str, Sequence[str]] | None = None,
                 classes: Sequence[str] | None = None) -> None:
        super().__init__()
        self.root = Path(root).expanduser().resolve()
        self.command = cmd = command
        self.classes, self.samples = scan_folder(self.root, classes or cmd.labels, cmd.label_map)
        self.fingerprint = fingerprint(self.root, self.samples)
        self.groups = read_groups(self.root)
        if split is not None:
            pos = {rel: i for i, (rel, _) in enumerate(self.samples)}
            missing = [r for part in split.values() for r in part if r not in pos]
            if missing:
                raise ConfigError("data", f"{len(missing)} image(s) of the stored split are missing from"
                                  f" {self.root}, e.g. {missing[0]!r}", missing[0])
            self.split = {k: sorted(pos[r] for r in v) for k, v in split.items()}
        else:
            self.split = stratified_split(self.samples, cmd.split.to_dict(), cmd.seed, self.groups)
        key = hashlib.sha1(json.dumps([self.fingerprint, cmd.image_hw, cmd.channels,
                                       [c.to_dict() for c in cmd.pil_ops]]).encode()).hexdigest()[:20]
        self.cache = ImageCache(self.root, [r for r, _ in self.samples], cmd.channels, cmd.image_hw, cmd.pil_ops,
                                key, persist=cmd.cache, enabled=cmd.cache)
        self.targets = [ci for _, ci in self.samples]
        self._train_tf = build_transform(cmd.transforms, "transforms")
        self._eval_tf = build_transform(cmd.eval_transforms, "eval_transforms")
        self.test_limit: int | None = None

    @property
    def n_labels(self) -> int:
        return len(self.classes)

    @property
    def in_shape(self) -> tuple[int, int, int]:
        """Shape of one model input (C, H, W) after the training transforms."""
        if not self.split["train"]:
            return (self.command.channels, *self.command.image_hw)
        return tuple(self.dataset("train")[0][0].shape)  # type: ignore[return-value]

    def dataset(self, part: str, limit: int | None = None) -> ImageSet:
        idx = self.split.get(part, [])
        if limit is not None:
            idx = sorted(random.Random(self.command.seed).sample(idx, min(limit, len(idx))))
        tf = self._train_tf if part == "train" else self._eval_tf
        return ImageSet(self.cache, idx, self.targets, tf, seed=runtime.derive_seed(self.command.seed, part))

    def split_files(self) -> dict[str, list[str]]:
        """The split as relative paths (what ``split.json`` stores)."""
        return {k: [self.samples[i][0] for i in v] for k, v in self.split.items()}

    def info(self) -> dict[str, Any]:
        """What the run record stores about the data: folder, fingerprint, classes, split, groups."""
        cmd = self.command
        out = {"root": str(self.root), "fingerprint": self.fingerprint, "n_images": len(self.samples),
               "classes": list(self.classes), "label_map": dict(cmd.label_map or {}) or None,
               "split_seed": cmd.seed, "split_fractions": cmd.split.to_dict(),
               "split_counts": {k: len(v) for k, v in self.split.items()}, "split_file": "split.json"}
        if self.groups:
            stats = group_stats(self.groups, [r for r, _ in self.samples])
            out["dup_groups"] = {"source": "manifest.jsonl", **stats, "kept_together": True}
        return out

    def _loader(self, part: str, train: bool = False, limit: int | None = None) -> DataLoader:
        cmd = self.command
        ds = self.dataset(part, limit)
        if cmd.num_workers > 0 and self.cache.enabled:
            self.cache.fill()  # workers are forked: fill first so they share decoded pixels
        # Every loader has its own generator: without one, DataLoader draws its workers' base
        # seed from torch's global RNG, which other jobs' seeded sections borrow.
        seed = runtime.derive_seed(cmd.seed, "loader", part)
        loader = ResumableDataLoader if train else DataLoader  # a resumed run continues its epoch
        return loader(ds, batch_size=cmd.batch_size, sampler=SeededShuffle(len(ds), seed) if train else None,
                      num_workers=cmd.num_workers, persistent_workers=cmd.num_workers > 0,
                      generator=runtime.generator(seed + 1))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val") if self.split.get("val") else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", limit=self.test_limit)
