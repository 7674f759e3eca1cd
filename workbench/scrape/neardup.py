"""Near-duplicate images: resized, re-encoded and slightly cropped copies of one picture.

Exact hashes miss them, and one copy in training and one in test inflates test accuracy.
Detection is three steps, each cheap enough for the next to run on few pairs:

1. **candidates**: 64-bit perceptual hashes (``imagehash.phash``, a DCT of the 32×32
   grayscale image) within Hamming distance :data:`MAX_HAMMING` (20 of 64 bits);
2. **colour**: 4×4×4-bin RGB histograms within L1 distance :data:`MAX_COLOUR_L1` (0.5) and
   mean colours within :data:`MAX_MEAN_SHIFT` (12 of 255 in every channel);
3. **verification**: the best normalised cross-correlation of the blurred 32×32 RGB
   images over crops of either image of up to 5 % a side (steps of 2.5 %) is at least
   :data:`MIN_CORRELATION` (0.97) — a crop moves content under a hash, not under this.
   Pairs whose hashes differ by at most :data:`CLOSE_HAMMING` (8) bits pass with a looser
   0.7 histogram / 0.9 correlation (fine stripes suffer most from re-encoding).

Measured with ``benchmarks/bench_scrape.py --neardup`` on the stub's planted copies: phash
alone at 20 bits finds every copy but 96 % of the pairs it proposes are distinct images
(the corpus draws similar pictures); the three steps keep recall at 0.976–0.995 with
precision 1.000, and group none of 1,500 distinct corpus images. Pairs are joined into
groups (union-find), within and across labels. The rule applied to a group
(``near_duplicates=`` of ``scrape``):

- ``"drop"`` (default): inside one label keep the member with the most original pixels
  (then the better-ranked result, then the smaller sha256) and reject the others as
  ``near_duplicate``; a group spanning labels keeps one member per label, all tagged;
- ``"keep"``: keep every member, tagged;
- ``"off"``: no detection.

Tagged rows carry ``"dup_group"`` in the manifest; the train/val/test split keeps each
group on one side.
"""
from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from PIL import Image, ImageFilter

MAX_HAMMING = 20
MAX_COLOUR_L1 = 0.5
MIN_CORRELATION = 0.97
#: Largest difference of the mean colour (0-255, any channel): copies keep their average colour.
MAX_MEAN_SHIFT = 12.0
#: Hashes this close are trusted with a looser check (fine patterns suffer most from re-encoding).
CLOSE_HAMMING, CLOSE_COLOUR_L1, CLOSE_CORRELATION = 8, 0.7, 0.9
CROP_STEPS = (0.0, 0.025, 0.05)
MODES = ("drop", "keep", "off")
_SIDE = 32
_BOXES = list(itertools.product(CROP_STEPS, repeat=4))


def phash_hex(im: Image.Image) -> str:
    """The 64-bit perceptual hash of an image as 16 hex digits (what the manifest stores)."""
    import imagehash

    return str(imagehash.phash(im))


def _pixels(im: Image.Image, box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """The blurred 32×32 RGB image (optionally a crop of it) as one zero-mean unit vector."""
    g = im.convert("RGB")
    if box is not None and any(box):
        w, h = g.size
        g = g.crop((round(box[0] * w), round(box[1] * h), w - round(box[2] * w), h - round(box[3] * h)))
    a = np.asarray(g.resize((_SIDE, _SIDE), Image.BOX).filter(ImageFilter.GaussianBlur(1)), dtype=np.float32)
    a = (a - a.mean(axis=(0, 1))).ravel()  # per channel: the colour of a region matters, not its brightness
    n = float(np.linalg.norm(a))
    return a / n if n > 1e-6 else a


def _hist(im: Image.Image) -> np.ndarray:
    """A 4×4×4-bin RGB histogram (64 values summing to 1) followed by the mean R, G, B."""
    small = np.asarray(im.convert("RGB").resize((16, 16), Image.BOX), dtype=np.uint8).reshape(-1, 3)
    q = small // 64
    h = np.bincount(q[:, 0].astype(int) * 16 + q[:, 1] * 4 + q[:, 2], minlength=64).astype(np.float32)
    return np.concatenate([h / h.sum(), small.mean(axis=0).astype(np.float32)])


class _Images:
    """Lazy, bounded cache of what the later steps need per image."""

    def __init__(self, root: Path, rows: Sequence[Mapping[str, Any]], images: Mapping[int, Image.Image] | None):
        self.root, self.rows, self.given = root, rows, dict(images or {})
        self._hist: dict[int, np.ndarray] = {}
        self._stack: OrderedDict[int, np.ndarray] = OrderedDict()

    def image(self, i: int) -> Image.Image:
        if i in self.given:
            return self.given[i]
        with Image.open(self.root / self.rows[i]["path"]) as im:
            return im.convert("RGB")

    def hist(self, i: int) -> np.ndarray:
        if i not in self._hist:
            self._hist[i] = _hist(self.image(i))
        return self._hist[i]

    def stack(self, i: int) -> np.ndarray:
        """Row 0: the whole image; the others: its crops (for the crop-tolerant correlation)."""
        if i in self._stack:
            self._stack.move_to_end(i)
            return self._stack[i]
        im = self.image(i)
        s = np.stack([_pixels(im, b) for b in _BOXES])
        self._stack[i] = s
        if len(self._stack) > 64:
            self._stack.popitem(last=False)
        return s


def correlation(a: Image.Image, b: Image.Image) -> float:
    """Best normalised cross-correlation of ``a`` and ``b`` over crops of either (≤ 5 % a side)."""
    sa, sb = np.stack([_pixels(a, x) for x in _BOXES]), np.stack([_pixels(b, x) for x in _BOXES])
    return float(max((sa @ sb[0]).max(), (sb @ sa[0]).max()))


def _hashes(rows: Sequence[Mapping[str, Any]], cache: _Images) -> np.ndarray:
    out = np.zeros(len(rows), dtype=np.uint64)
    for i, r in enumerate(rows):
        h = r.get("phash")
        if not (isinstance(h, str) and len(h) == 16):
            h = phash_hex(cache.image(i))
        out[i] = np.uint64(int(h, 16))
    return out


def candidate_pairs(hashes: np.ndarray, max_hamming: int = MAX_HAMMING,
                    chunk: int = 256) -> list[tuple[int, int, int]]:
    """``(i, j, bits)`` for index pairs ``i < j`` whose hashes differ in at most ``max_hamming`` bits."""
    pairs: list[tuple[int, int, int]] = []
    n = len(hashes)
    for s in range(0, n, chunk):
        block = hashes[s:s + chunk, None] ^ hashes[None, :]
        dist = np.bitwise_count(block)
        ii, jj = np.nonzero(dist <= max_hamming)
        for i, j in zip(ii + s, jj):
            if i < j:
                pairs.append((int(i), int(j), int(dist[i - s, j])))
    return pairs


@dataclass
class NearDupResult:
    """Groups found (lists of manifest-row indices) and what the rule did with them."""

    groups: list[list[int]] = field(default_factory=list)
    drop: list[tuple[int, int]] = field(default_factory=list)   # (dropped row, kept row it duplicates)
    group_of: dict[int, str] = field(default_factory=dict)      # row index -> group id (kept rows)
    candidates: int = 0
    verified: int = 0

    def summary(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """What ``summary.json`` keeps: counts and each group's members."""
        groups = {}
        dropped = {i for i, _ in self.drop}
        for g in self.groups:
            groups[_group_id(rows, g)] = {"labels": sorted({rows[i]["label"] for i in g}),
                                          "kept": sorted(rows[i]["path"] for i in g if i not in dropped),
                                          "dropped": sorted(rows[i]["path"] for i in g if i in dropped)}
        return {"n_groups": len(self.groups), "cross_label": sum(len(v["labels"]) > 1 for v in groups.values()),
                "dropped": len(self.drop), "candidate_pairs": self.candidates, "verified_pairs": self.verified,
                "groups": groups, "rule": {"max_hamming": MAX_HAMMING, "max_colour_l1": MAX_COLOUR_L1,
                                           "min_correlation": MIN_CORRELATION, "max_crop": CROP_STEPS[-1]}}


def _group_id(rows: Sequence[Mapping[str, Any]], members: Iterable[int]) -> str:
    return "nd-" + min(rows[i]["sha256"] for i in members)[:12]


def _rank(r: Mapping[str, Any]) -> tuple:
    px = (r.get("original_width") or r.get("width") or 0) * (r.get("original_height") or r.get("height") or 0)
    return (-px, r.get("page", 0), r.get("position", 0), r["sha256"])


def find(root: str | Path, rows: Sequence[Mapping[str, Any]], mode: str = "drop",
         images: Mapping[int, Image.Image] | None = None) -> NearDupResult:
    """Group near-duplicates among ``rows`` (manifest rows under ``root``) and apply ``mode``."""
    if mode not in MODES:
        raise ValueError(f"near_duplicates: {mode!r} is not allowed; expected one of {', '.join(MODES)}")
    res = NearDupResult()
    if mode == "off" or len(rows) < 2:
        return res
    cache = _Images(Path(root), rows, images)
    pairs = candidate_pairs(_hashes(rows, cache))
    res.candidates = len(pairs)
    parent = list(range(len(rows)))

    def top(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, dist in pairs:
        if top(i) == top(j):
            continue  # already joined through others: skip the costly check
        close = dist <= CLOSE_HAMMING
        hi, hj = cache.hist(i), cache.hist(j)
        if (float(np.abs(hi[:64] - hj[:64]).sum()) > (CLOSE_COLOUR_L1 if close else MAX_COLOUR_L1)
                or float(np.abs(hi[64:] - hj[64:]).max()) > MAX_MEAN_SHIFT):
            continue
        si, sj = cache.stack(i), cache.stack(j)
        if max(float((si @ sj[0]).max()), float((sj @ si[0]).max())) >= (CLOSE_CORRELATION if close
                                                                          else MIN_CORRELATION):
            res.verified += 1
            parent[top(i)] = top(j)
    members: dict[int, list[int]] = {}
    for i in range(len(rows)):
        members.setdefault(top(i), []).append(i)
    res.groups = sorted((sorted(g) for g in members.values() if len(g) > 1), key=lambda g: g[0])
    for g in res.groups:
        by_label: dict[str, list[int]] = {}
        for i in g:
            by_label.setdefault(rows[i]["label"], []).append(i)
        kept = []
        for label_rows in by_label.values():
            label_rows.sort(key=lambda i: _rank(rows[i]))
            kept.append(label_rows[0])
            if mode == "drop":
                res.drop += [(i, label_rows[0]) for i in label_rows[1:]]
            else:
                kept += label_rows[1:]
        if len(kept) > 1:  # a lone survivor cannot leak across a split: no tag needed
            gid = _group_id(rows, g)
            for i in kept:
                res.group_of[i] = gid
    return res
