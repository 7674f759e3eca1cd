"""Episodic few-shot tasks: N-way K-shot Q-query sampling from any labelled image source.

- A *source* holds images grouped by class (:class:`TensorSource` for tensors and the glyph
  benchmark, :class:`FolderSource` for an image folder such as a scraped dataset).
- :func:`split_classes` makes class-disjoint meta-train / meta-val / meta-test splits from a
  seed; the learners store the result in the run, so they are never re-randomised.
- :class:`EpisodeSampler` draws task ``index`` from ``numpy.random.default_rng([seed, stream,
  index])``: a task is a pure function of ``(seed, stream, index)``, whatever order tasks are
  asked for in, in any process (DDP ranks, DataLoader workers).
- Rotation-as-new-class augmentation (the Omniglot convention): each class becomes four,
  rotated by 0/90/180/270°, in the splits named by ``rotate_splits`` (meta-train by default).
  A rotated class can *be* a held-out class (a 6 turned by 180° is a 9):
  :func:`rotation_collisions` finds the rotated meta-train classes whose mean image correlates
  with a held-out class's, and the sampler leaves them out (``exclude``).
- :class:`EpisodicDataModule` is the LightningDataModule yielding meta-batches
  ``(support_x [B,N·K,C,H,W], support_y [B,N·K], query_x [B,N·Q,C,H,W], query_y [B,N·Q])``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import pytorch_lightning as pl

from .. import runtime
from .folders import class_folders, fingerprint, load_image
from .resumable import ResumableDataLoader

SPLITS = ("train", "val", "test")
#: Stream ids: train / val / test tasks are drawn from different random streams.
STREAMS = {"train": 0, "val": 1, "test": 2}


# -- sources ----------------------------------------------------------------------------------

class TensorSource:
    """Images in memory, grouped by class.

    Args:
        images: ``[N, C, H, W]`` (or ``[N, H, W]``) tensor/array, uint8 (0–255) or float (0–1).
        labels: class index of each image.
        classes: class names (default ``"0"``, ``"1"`` …).
        groups: a group per class (alphabet, super-class) for by-group splits.
    """

    def __init__(self, images: Any, labels: Sequence[int] | torch.Tensor, classes: Sequence[str] | None = None,
                 groups: Sequence[str] | None = None, name: str = "tensors",
                 fingerprint: Mapping[str, Any] | None = None, rotation_distinct: bool = False) -> None:
        x = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
        if x.ndim == 3:
            x = x.unsqueeze(1)
        if x.ndim != 4:
            raise ValueError(f"images: expected [N, C, H, W] or [N, H, W], got shape {tuple(x.shape)}")
        y = torch.as_tensor(np.asarray(labels), dtype=torch.long).view(-1)
        if len(y) != len(x):
            raise ValueError(f"labels: {len(y)} labels for {len(x)} images")
        n_cls = int(y.max()) + 1 if len(y) else 0
        self.classes = list(classes) if classes is not None else [str(i) for i in range(n_cls)]
        if len(self.classes) < n_cls:
            raise ValueError(f"classes: {len(self.classes)} names for labels up to {n_cls - 1}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes: names must be unique")
        self.groups = list(groups) if groups is not None else list(self.classes)
        if len(self.groups) != len(self.classes):
            raise ValueError(f"groups: {len(self.groups)} groups for {len(self.classes)} classes")
        self.images = x
        self.by_class = [torch.nonzero(y == c).view(-1) for c in range(len(self.classes))]
        self.name = name
        self._fingerprint = dict(fingerprint) if fingerprint else None
        #: True when no class is a rotation of another (the glyph benchmark's rule guarantees it).
        self.rotation_distinct = rotation_distinct

    @classmethod
    def from_stacked(cls, stacked: Any, classes: Sequence[str], groups: Sequence[str] | None = None,
                     **kw: Any) -> "TensorSource":
        """From ``[classes, instances, (C,) H, W]`` (the glyph/Omniglot-array layout)."""
        x = torch.as_tensor(np.asarray(stacked))
        n_c, n_i = x.shape[:2]
        x = x.reshape(n_c * n_i, *x.shape[2:])
        labels = torch.arange(n_c).repeat_interleave(n_i)
        return cls(x, labels, classes, groups, **kw)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def count(self, c: int) -> int:
        """Images of class ``c``."""
        return len(self.by_class[c])

    def get(self, c: int, idx: Sequence[int] | np.ndarray) -> torch.Tensor:
        """Images ``idx`` (positions within class ``c``) as float ``[n, C, H, W]`` in [0, 1]."""
        x = self.images[self.by_class[c][torch.as_tensor(np.asarray(idx), dtype=torch.long)]]
        return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the data in a run record."""
        if self._fingerprint is not None:
            return dict(self._fingerprint)
        h = hashlib.sha1(self.images.numpy().tobytes()[: 1 << 22]).hexdigest()[:16]
        return {"name": self.name, "classes": len(self.classes), "images": int(len(self.images)), "fingerprint": h}


class FolderSource:
    """An image folder: ``root/<class>/*.png`` (``depth=1``, e.g. a scraped dataset) or
    ``root/<group>/<class>/*.png`` (``depth=2``, e.g. Omniglot's ``alphabet/character``).

    Images are decoded on first use (then kept), converted to ``channels`` and resized to
    ``image_size``; ``invert`` turns black-on-white drawings into ink = 1.
    """

    rotation_distinct = False

    def __init__(self, root: str | Path, image_size: int = 28, channels: int = 1, depth: int = 1,
                 invert: bool = False, name: str = "folder", min_per_class: int = 1,
                 classes: Sequence[tuple[str, str, list[Path]]] | None = None) -> None:
        self.root = Path(root).expanduser()
        if classes is None:
            if not self.root.is_dir():
                raise FileNotFoundError(f"data: {str(self.root)!r} is not a folder")
            classes = class_folders(self.root, depth)
        classes = [c for c in classes if len(c[2]) >= min_per_class]
        if not classes:
            raise ValueError(f"data: no class folders with images under {str(self.root)!r} (depth {depth})")
        self.classes = [c[0] for c in classes]
        self.groups = [c[1] for c in classes]
        self.files = [c[2] for c in classes]
        self.image_size = int(image_size)
        self.channels = int(channels)
        self.invert = invert
        self.name = name
        self._cache: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def count(self, c: int) -> int:
        return len(self.files[c])

    def _load(self, c: int, i: int) -> torch.Tensor:
        t = self._cache.get((c, i))
        if t is None:
            side = (self.image_size, self.image_size)
            t = torch.from_numpy(load_image(self.files[c][i], self.channels, side, invert=self.invert))
            self._cache[(c, i)] = t
        return t

    def get(self, c: int, idx: Sequence[int] | np.ndarray) -> torch.Tensor:
        return torch.stack([self._load(c, int(i)) for i in idx]).float().div_(255.0)

    def fingerprint(self) -> dict[str, Any]:
        files = [f.resolve() for fs in self.files for f in fs]
        return {"name": self.name, "root": str(self.root), "classes": len(self.classes), "images": len(files),
                "fingerprint": fingerprint(self.root.resolve(), files)}


# -- splits -----------------------------------------------------------------------------------

def split_classes(classes: Sequence[str], seed: int = 0, fractions: Sequence[float] = (0.65, 0.1, 0.25),
                  groups: Sequence[str] | None = None, by: str = "class",
                  predefined: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """Class-disjoint ``{"train": [...], "val": [...], "test": [...]}`` fixed by ``seed``.

    Args:
        classes: all class names.
        fractions: train / val / test shares (of classes, or of groups when ``by="group"``).
        groups: group per class (alphabets); ``by="group"`` keeps each group in one split,
            so meta-test alphabets are never seen in meta-training (Lake's Omniglot protocol).
        predefined: ``class -> split`` from the dataset (mini-ImageNet csv); used as is.
    """
    if predefined:
        out: dict[str, list[str]] = {s: [] for s in SPLITS}
        for c in classes:
            s = predefined.get(c)
            if s not in out:
                raise ValueError(f"split: class {c!r} has predefined split {s!r}; allowed: {list(SPLITS)}")
            out[s].append(c)
        return out
    if by not in ("class", "group"):
        raise ValueError(f"split_by: unknown value {by!r}; allowed: ['class', 'group']")
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split: fractions must be three non-negative numbers adding up to 1, got {fractions}")
    units = list(dict.fromkeys(groups)) if by == "group" else list(classes)
    if by == "group" and groups is None:
        raise ValueError("split_by='group' needs a group per class")
    # Sort before shuffling so the split depends on names and seed only, not on listing order.
    units = sorted(units)
    rng = np.random.default_rng([int(seed), 7919])
    order = [units[i] for i in rng.permutation(len(units))]
    n = len(order)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    if fractions[2] > 0 and n_train + n_val >= n and n >= 3:
        n_train = max(1, n - n_val - 1)
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    if by == "class":
        return {s: sorted(parts[s]) for s in SPLITS}
    where = {u: s for s, us in parts.items() for u in us}
    out = {s: [] for s in SPLITS}
    for c, g in zip(classes, groups):  # type: ignore[arg-type]
        out[where[g]].append(c)
    return {s: sorted(v) for s, v in out.items()}


# -- tasks ------------------------------------------------------------------------------------

@dataclass
class Task:
    """One episode. Labels are ``0..n_way-1`` in the order of ``classes``."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    classes: list[str]

    def as_tuple(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.support_x, self.support_y, self.query_x, self.query_y


class EpisodeSampler:
    """Draw N-way K-shot Q-query tasks from the given classes of a source.

    Task ``index`` depends only on ``(seed, stream, index)`` and the class list.

    Args:
        source: a :class:`TensorSource` / :class:`FolderSource`.
        classes: class names this sampler may use (one split).
        rotate: add 90/180/270° rotations of every class as new classes.
        stream: separates the random streams of train / val / test tasks.
        exclude: rotated classes (``"<class>@180"``) to leave out of the pool (:func:`rotation_collisions`).
    """

    def __init__(self, source: Any, classes: Sequence[str], n_way: int = 5, k_shot: int = 1, q_query: int = 15,
                 seed: int = 0, rotate: bool = False, stream: int = 0, exclude: Iterable[str] = ()) -> None:
        index = {c: i for i, c in enumerate(source.classes)}
        missing = [c for c in classes if c not in index]
        if missing:
            raise ValueError(f"classes not in the source: {missing[:5]}")
        self.source = source
        self.class_names = list(classes)
        self.class_ids = [index[c] for c in classes]
        need = k_shot + q_query
        short = [c for c, i in zip(classes, self.class_ids) if source.count(i) < need]
        if short:
            raise ValueError(f"k_shot + q_query = {need} images per class needed; {len(short)} classes have fewer "
                             f"(e.g. {short[0]!r} has {source.count(index[short[0]])})")
        self.rotations = (0, 1, 2, 3) if rotate else (0,)
        skip = set(exclude)
        self.pool = [(c, r) for c in range(len(self.class_ids)) for r in self.rotations
                     if not r or f"{self.class_names[c]}@{90 * r}" not in skip]
        if n_way > len(self.pool):
            raise ValueError(f"n_way = {n_way} but this split has only {len(self.pool)} classes")
        self.n_way, self.k_shot, self.q_query = int(n_way), int(k_shot), int(q_query)
        self.seed, self.stream = int(seed), int(stream)

    def task(self, index: int) -> Task:
        """Task number ``index`` (deterministic)."""
        rng = np.random.default_rng([self.seed, self.stream, int(index)])
        picks = rng.choice(len(self.pool), size=self.n_way, replace=False)
        k, q = self.k_shot, self.q_query
        sx, qx, names = [], [], []
        for p in picks:
            c, r = self.pool[int(p)]
            cid = self.class_ids[c]
            idx = rng.choice(self.source.count(cid), size=k + q, replace=False)
            x = self.source.get(cid, idx)
            if r:
                x = torch.rot90(x, r, dims=(-2, -1))
            sx.append(x[:k])
            qx.append(x[k:])
            names.append(self.class_names[c] + (f"@{90 * r}" if r else ""))
        labels = torch.arange(self.n_way)
        return Task(torch.cat(sx), labels.repeat_interleave(k), torch.cat(qx), labels.repeat_interleave(q), names)


def rotation_collisions(source: Any, train: Sequence[str], heldout: Sequence[str], threshold: float = 0.9,
                        per_class: int = 8) -> list[str]:
    """Rotated meta-train classes (``"<class>@<degrees>"``) that look like a held-out class.

    Each class is summarised by its mean image (of up to ``per_class`` images); a meta-train
    class rotated by 90/180/270° whose summary correlates at ``threshold`` or more with a
    held-out class's would teach that held-out class under another name (6 → 9), so it must
    not be a meta-training class. Class means of photos are smooth, so on photo folders this
    errs towards leaving rotations out.
    """
    if not train or not heldout:
        return []
    index = {c: i for i, c in enumerate(source.classes)}

    def summary(c: str, r: int = 0) -> torch.Tensor:
        cid = index[c]
        x = source.get(cid, list(range(min(per_class, source.count(cid))))).mean(0)
        x = torch.rot90(x, r, dims=(-2, -1)).flatten()
        x = x - x.mean()
        return x / (x.norm() + 1e-8)

    held = torch.stack([summary(c) for c in heldout])
    out = []
    for c in train:
        for r in (1, 2, 3):
            if float((held @ summary(c, r)).max()) >= threshold:
                out.append(f"{c}@{90 * r}")
    return out


class EpisodeDataset(Dataset):
    """``length`` tasks ``offset, offset+1, …`` of a sampler, as tuples (batchable by default collate)."""

    def __init__(self, sampler: EpisodeSampler, length: int, offset: int = 0) -> None:
        self.sampler, self.length, self.offset = sampler, int(length), int(offset)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        return self.sampler.task(self.offset + int(i)).as_tuple()


class FlatDataset(Dataset):
    """All images of some classes with labels ``0..len(classes)-1`` (the fine-tune baseline's
    ordinary classification pre-training on meta-train classes)."""

    def __init__(self, source: Any, classes: Sequence[str]) -> None:
        index = {c: i for i, c in enumerate(source.classes)}
        self.source = source
        self.items = [(index[c], j, lab) for lab, c in enumerate(classes) for j in range(source.count(index[c]))]
        self.n_classes = len(classes)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        c, j, lab = self.items[i]
        return self.source.get(c, [j])[0], lab


# -- DataModule -------------------------------------------------------------------------------

class EpisodicDataModule(pl.LightningDataModule):
    """Meta-batches of tasks for meta-train, fixed task sets for meta-val and meta-test.

    Under DDP each process gets ``meta_batch // world_size`` tasks per step (the meta-batch is
    split across processes; Lightning's distributed sampler hands each rank different tasks).

    Args:
        source: the image source.
        splits: ``{"train": [...], "val": [...], "test": [...]}`` class names (:func:`split_classes`).
        train_tasks: tasks in the training "epoch" (``steps × meta_batch``).
        flat_batch_size: if set, the train loader yields ordinary ``(x, y)`` batches over all
            meta-train images instead of tasks (fine-tune baseline).
    """

    def __init__(self, source: Any, splits: Mapping[str, Sequence[str]], n_way: int = 5, k_shot: int = 1,
                 q_query: int = 15, meta_batch: int = 16, train_tasks: int = 1000, val_episodes: int = 100,
                 test_episodes: int = 600, seed: int = 0, rotate: bool = False,
                 rotate_splits: Sequence[str] = ("train",), test_n_way: int | None = None,
                 test_k_shot: int | None = None, test_q_query: int | None = None,
                 train_n_way: int | None = None, flat_batch_size: int | None = None,
                 eval_batch: int | None = None, exclude: Iterable[str] = ()) -> None:
        super().__init__()
        self.source = source
        self.splits = {s: list(splits.get(s, [])) for s in SPLITS}
        self.n_way, self.k_shot, self.q_query = n_way, k_shot, q_query
        self.train_n_way = train_n_way or n_way
        self.test_n_way = test_n_way or n_way
        self.test_k_shot = test_k_shot or k_shot
        self.test_q_query = test_q_query or q_query
        self.meta_batch = meta_batch
        self.train_tasks, self.val_episodes, self.test_episodes = train_tasks, val_episodes, test_episodes
        self.seed, self.rotate, self.rotate_splits = seed, rotate, tuple(rotate_splits)
        self.flat_batch_size = flat_batch_size
        self.eval_batch = eval_batch or min(meta_batch, 16)
        self.exclude = tuple(exclude)

    def sampler(self, split: str, n_way: int | None = None, k_shot: int | None = None,
                q_query: int | None = None) -> EpisodeSampler:
        """The task sampler of one split (test settings for val/test unless given)."""
        if split == "train":
            n, k, q = self.train_n_way, self.k_shot, self.q_query
        else:
            n, k, q = self.test_n_way, self.test_k_shot, self.test_q_query
        return EpisodeSampler(self.source, self.splits[split], n_way or n, k_shot or k, q_query or q,
                              seed=self.seed, rotate=self.rotate and split in self.rotate_splits,
                              stream=STREAMS[split], exclude=self.exclude)

    def _world(self) -> int:
        t = getattr(self, "trainer", None)
        return max(1, int(getattr(t, "world_size", 1) or 1)) if t is not None else 1

    def _generator(self, part: str) -> torch.Generator:
        # Without its own generator a DataLoader draws its base seed from torch's global RNG.
        return runtime.generator(runtime.derive_seed(self.seed, "episodes", part))

    def train_dataloader(self) -> DataLoader:
        if self.flat_batch_size:
            ds = FlatDataset(self.source, self.splits["train"])
            return ResumableDataLoader(ds, batch_size=self.flat_batch_size, shuffle=True,
                                       generator=self._generator("train"), drop_last=True)
        per_rank = max(1, self.meta_batch // self._world())
        return ResumableDataLoader(EpisodeDataset(self.sampler("train"), self.train_tasks), batch_size=per_rank,
                                   shuffle=False, generator=self._generator("train"))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(EpisodeDataset(self.sampler("val"), self.val_episodes), batch_size=self.eval_batch,
                          generator=self._generator("val"))

    def test_dataloader(self) -> DataLoader:
        return DataLoader(EpisodeDataset(self.sampler("test"), self.test_episodes), batch_size=self.eval_batch,
                          generator=self._generator("test"))


def splits_fingerprint(splits: Mapping[str, Sequence[str]]) -> str:
    """A short hash of a split (to check a stored split against a recomputed one)."""
    return hashlib.sha1(json.dumps({k: list(v) for k, v in splits.items()}, sort_keys=True).encode()).hexdigest()[:12]


def check_disjoint(splits: Mapping[str, Iterable[str]]) -> None:
    """Raise if any class is in two splits (rotation suffixes ``@90`` … count as the base class)."""
    seen: dict[str, str] = {}
    for s, names in splits.items():
        for n in names:
            base = n.split("@", 1)[0]
            if base in seen and seen[base] != s:
                raise ValueError(f"class {base!r} is in both {seen[base]!r} and {s!r}")
            seen[base] = s
