"""The dataset on disk: ``ROOT/<label folder>/<hash>.jpg`` + ``manifest.jsonl`` + ``summary.json``.

- ``manifest.jsonl``: one JSON line per accepted image (label, folder, query, chips, url,
  source page, title, width, height, sha256, fetched time). Append-only, so a crash
  loses at most the line being written and a rerun resumes from it.
- ``rejects.jsonl``: one line per skipped candidate with its reason.
- ``summary.json``: count per label, rejects by reason, queries, the scrape run id.

The layout is what ``torchvision.datasets.ImageFolder`` reads.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..runlog.log import read_jsonl

MANIFEST = "manifest.jsonl"
REJECTS = "rejects.jsonl"
SUMMARY = "summary.json"
IMAGE_EXT = ".jpg"
#: Longest label folder name (bytes are what file systems limit; keep well under 255).
MAX_FOLDER = 80
_UNSAFE = re.compile(r"[^\w\-.]+", re.UNICODE)


def safe_label(label: str) -> str:
    """A folder name for a label: stable, unicode-safe, no separators, no ``..``.

    NFKC-normalised, lower-cased, runs of anything but letters/digits/``_-.`` become
    ``_``; leading dots are dropped (no hidden folders, no ``..``); an empty or
    over-long result gets a short hash of the label so distinct labels stay distinct.
    """
    if not isinstance(label, str):
        raise TypeError(f"label: {label!r} must be a string")
    text = unicodedata.normalize("NFKC", label).strip().casefold()
    text = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text)  # control/format chars
    folder = _UNSAFE.sub("_", text).strip("._-")
    digest = hashlib.sha256(label.encode("utf-8")).hexdigest()[:8]
    if not folder:
        return f"label-{digest}"
    if len(folder.encode("utf-8")) > MAX_FOLDER:
        cut = folder.encode("utf-8")[: MAX_FOLDER - 9].decode("utf-8", "ignore").strip("._-")
        folder = f"{cut}-{digest}"
    return folder


def assign_folders(labels: Iterable[str], existing: Mapping[str, str] | None = None) -> dict[str, str]:
    """Map labels to distinct folder names, keeping mappings already in the manifest.

    Two labels that sanitise to the same name (``"a/b"``, ``"a b"``) get a hash suffix
    on the later one, so neither overwrites the other.
    """
    out = dict(existing or {})
    used = set(out.values())
    for label in labels:
        if label in out:
            continue
        folder = safe_label(label)
        if folder in used:
            folder = f"{folder[: MAX_FOLDER - 9]}-{hashlib.sha256(label.encode('utf-8')).hexdigest()[:8]}"
        out[label] = folder
        used.add(folder)
    return out


def load_manifest(root: str | os.PathLike) -> list[dict[str, Any]]:
    """The manifest rows of a dataset whose image file still exists."""
    root = Path(root)
    return [r for r in read_jsonl(root / MANIFEST) if (root / r.get("path", "")).is_file()]


def load_rejects(root: str | os.PathLike) -> list[dict[str, Any]]:
    """Every recorded reject of a dataset (all runs)."""
    return read_jsonl(Path(root) / REJECTS)


def manifest_frame(root: str | os.PathLike):
    """The manifest as a pandas DataFrame."""
    import pandas as pd

    return pd.DataFrame(load_manifest(root))


def read_summary(root: str | os.PathLike) -> dict[str, Any]:
    """``summary.json`` of a dataset (empty dict when absent)."""
    try:
        return json.loads((Path(root) / SUMMARY).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


class Manifest:
    """Thread-safe, append-only view of a dataset's manifest and rejects.

    Holds the sets the downloader dedupes against: URLs already fetched, content
    hashes already stored (across all labels) and URLs rejected for good.
    """

    #: reject reasons that would repeat on a retry (not re-fetched on resume)
    PERMANENT = frozenset({"not_an_image", "svg", "decompression_bomb", "too_large", "truncated"})

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.rows = load_manifest(self.root)
        self.urls: dict[str, str] = {r["url"]: r["label"] for r in self.rows}  # url -> label
        self.hashes = {r["sha256"]: r for r in self.rows}
        self.label_folders: dict[str, str] = {}
        for r in self.rows:
            self.label_folders.setdefault(r["label"], r["folder"])
        self.bad_urls = {r["url"] for r in load_rejects(self.root) if r.get("reason") in self.PERMANENT and r.get("url")}
        self.counts = Counter(r["label"] for r in self.rows)

    def add(self, row: Mapping[str, Any]) -> None:
        line = json.dumps(dict(row), ensure_ascii=False) + "\n"
        with open(self.root / MANIFEST, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
        self.rows.append(dict(row))

    def reject(self, row: Mapping[str, Any]) -> None:
        with open(self.root / REJECTS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(dict(row), ensure_ascii=False) + "\n")


def write_summary(root: str | os.PathLike, data: Mapping[str, Any]) -> Path:
    """Write ``summary.json`` atomically."""
    p = Path(root) / SUMMARY
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dict(data), indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, p)
    return p


def fingerprint(root: str | os.PathLike) -> dict[str, Any]:
    """A dataset fingerprint for run records: classes, counts and a hash of the contents.

    Two datasets with the same images under the same labels have the same ``sha256``,
    wherever they live.
    """
    root = Path(root)
    rows = load_manifest(root)
    h = hashlib.sha256()
    for folder, sha in sorted((r["folder"], r["sha256"]) for r in rows):
        h.update(f"{folder}/{sha}\n".encode())
    counts = Counter(r["folder"] for r in rows)
    return {"root": str(root), "name": root.name, "source": "scrape", "n_images": len(rows),
            "classes": sorted(counts), "counts": dict(sorted(counts.items())), "sha256": h.hexdigest()[:16]}


def preview(root: str | os.PathLike, per_label: int = 8, *, labels: Iterable[str] | None = None,
            thumb: int = 64, seed: int = 0):
    """A matplotlib figure: one row of thumbnails per label (from the manifest).

    Returns a ``matplotlib.figure.Figure`` (not registered with pyplot), so notebooks
    ``display`` it and panels render it to PNG from any thread.
    """
    import random

    # A bare Figure, not pyplot: safe from worker threads and never shown twice.
    from matplotlib.figure import Figure

    class PreviewFigure(Figure):
        """Displays itself in Jupyter even when pyplot (and its inline hook) was never imported."""

        def _repr_png_(self) -> bytes:
            import io

            buf = io.BytesIO()
            self.savefig(buf, format="png", dpi=80)
            return buf.getvalue()
    from PIL import Image

    root = Path(root)
    rows = load_manifest(root)
    by_label: dict[str, list[dict]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    wanted = list(labels) if labels is not None else sorted(by_label)
    if not wanted:
        raise ValueError(f"preview: no images in {root} (is it a scraped dataset with a {MANIFEST}?)")
    rng = random.Random(seed)
    fig = PreviewFigure(figsize=(per_label * 1.1, len(wanted) * 1.2 + 0.3))
    axes = fig.subplots(len(wanted), per_label, squeeze=False)
    for i, label in enumerate(wanted):
        items = by_label.get(label, [])
        pick = rng.sample(items, min(per_label, len(items)))
        for j in range(per_label):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j < len(pick):
                with Image.open(root / pick[j]["path"]) as im:
                    im.thumbnail((thumb, thumb))
                    ax.imshow(im.convert("RGB"))
            if j == 0:
                ax.set_ylabel(f"{label}\n({len(items)})", rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"{root.name}: {len(rows)} images, {len(wanted)} labels", fontsize=9)
    fig.tight_layout()
    return fig
