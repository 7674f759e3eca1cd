"""A thumbnail grid of a scraped dataset (one row per label), as a matplotlib figure."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from .dataset import MANIFEST, load_manifest


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
