"""A family of small image-folder tasks for meta-analysis: glyph alphabets and scraped sets.

Warm-starting needs *several* past tasks. Two offline sources give visually different ones:

- :func:`glyph_task`: one writing system of the glyph benchmark
  (:mod:`workbench.data.glyphs`) written as ``root/<class>/<n>.png`` (28×28 grayscale);
- :func:`scraped_task`: a set of queries scraped through the loopback SerpApi stub
  (:mod:`workbench.scrape`), e.g. one colour in several shapes (a shape task) or one shape
  in several colours (a colour task).

Folders are written once under ``datasets_dir()/meta-tasks`` and reused (atomic: a
half-written folder is never mistaken for a finished one).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .. import paths

__all__ = ["glyph_task", "scraped_task", "task_family", "GLYPH_ALPHABETS", "SCRAPED_TASKS"]

#: Alphabets used by default (visually distinct scripts with enough classes).
GLYPH_ALPHABETS = ("Latin", "Greek", "Cyrillic", "Armenian", "Georgian", "Hebrew", "Lao", "Canadian")
#: Scraped task name → queries (the stub renders any "<colour> <shape>" query).
SCRAPED_TASKS: dict[str, tuple[str, ...]] = {
    "red-shapes": ("red circles", "red squares", "red triangles", "red stars", "red crosses"),
    "circle-colours": ("red circles", "blue circles", "green circles", "yellow circles", "purple circles"),
    "patterns": ("blue stripes", "blue dots", "blue checkerboard", "blue rings", "blue crosses"),
}


def _root() -> Path:
    p = paths.datasets_dir() / "meta-tasks"
    p.mkdir(parents=True, exist_ok=True)
    return p


def glyph_task(alphabet: str, n_classes: int = 10, per_class: int = 20, root: str | os.PathLike | None = None,
               seed: int = 0) -> Path:
    """Write ``n_classes`` characters of one glyph alphabet as an image folder; return its path."""
    from PIL import Image

    from ..data import glyphs

    if alphabet not in glyphs.ALPHABETS:
        raise ValueError(f"alphabet {alphabet!r}: not a glyph alphabet; allowed: {', '.join(glyphs.ALPHABETS)}")
    out = Path(root) if root is not None else _root() / f"glyphs-{alphabet}-{n_classes}x{per_class}-s{seed}"
    if (out / ".complete").is_file():
        return out
    g = glyphs.load_glyphs(seed=seed, alphabets=[alphabet], max_per_alphabet=n_classes, instances=per_class)
    if len(g) < 2:
        raise ValueError(f"alphabet {alphabet!r} has {len(g)} classes; need ≥ 2")
    with paths.replacing(out, suffix="", directory=True) as tmp:
        for ci, name in enumerate(g.classes):
            d = tmp / name.split("/")[-1].replace("+", "")
            d.mkdir(parents=True, exist_ok=True)
            for i in range(g.images.shape[1]):
                Image.fromarray(g.images[ci, i]).save(d / f"{i:02d}.png")
        (tmp / ".complete").write_text("ok")
    return out


def scraped_task(name: str, queries: Sequence[str] | None = None, per_class: int = 30,
                 root: str | os.PathLike | None = None) -> Path:
    """Scrape ``queries`` through the offline stub into an image folder (64×64); return its path."""
    from filelock import FileLock

    from ..scrape import scrape

    if queries is None:
        if name not in SCRAPED_TASKS:
            raise ValueError(f"scraped task {name!r}: unknown; give queries or use one of {', '.join(SCRAPED_TASKS)}")
        queries = SCRAPED_TASKS[name]
    out = Path(root) if root is not None else _root() / f"scraped-{name}-{per_class}"
    with FileLock(str(out.parent / f".{out.name}.lock"), timeout=600):
        if (out / ".complete").is_file():
            return out
        scrape(list(queries), out, limit=per_class, resize=64, offline=True, run_name=f"meta task {name}",
               log=lambda m: None, workers=8, stub_options={"results_per_query": max(100, per_class)})
        (out / ".complete").write_text("ok")
    return out


def task_family(n_glyph: int = 5, n_scraped: int = 3, n_classes: int = 10, per_class: int = 20,
                scraped_per_class: int = 30) -> dict[str, Path]:
    """Several tasks: ``n_glyph`` glyph alphabets and ``n_scraped`` scraped sets (name → folder)."""
    if n_glyph > len(GLYPH_ALPHABETS) or n_scraped > len(SCRAPED_TASKS):
        raise ValueError(f"at most {len(GLYPH_ALPHABETS)} glyph and {len(SCRAPED_TASKS)} scraped tasks")
    out = {f"glyphs-{a}": glyph_task(a, n_classes, per_class) for a in GLYPH_ALPHABETS[:n_glyph]}
    for name in list(SCRAPED_TASKS)[:n_scraped]:
        out[f"scraped-{name}"] = scraped_task(name, per_class=scraped_per_class)
    return out
