"""The text side of a scraped task: its queries, labels, related searches and chips.

Google's related searches and suggested chips say what a query *means* to searchers
("red fox" → "red fox cub", "fox drawing"), so two datasets whose searches relate are
likely related tasks even when their pixels differ. ``task_text`` collects that text
from a dataset folder; ``text_similarity`` compares two tasks with TF-IDF over word
and character n-grams (scikit-learn), so "fox" and "foxes" still meet. A recommender can
put it next to image meta-features::

    from workbench.scrape import task_text, text_similarity
    text_similarity("~/.workbench/datasets/foxes", "~/.workbench/datasets/wolves")  # 0..1

``dup_groups`` gives the near-duplicate group of every image, for splitting.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from .dataset import load_searches, read_summary

TaskLike = str | os.PathLike | Sequence[str]


def task_text(root: str | os.PathLike) -> list[str]:
    """Queries, labels, related searches and chips names of a scraped dataset (deduplicated).

    Read from ``summary.json`` (all builds) and ``searches.jsonl``; queries and labels come
    first. An empty list means the folder holds no scrape.
    """
    root = Path(root).expanduser()
    summary = read_summary(root)
    out: list[str] = []
    seen: set[str] = set()

    def add(texts: Iterable[object]) -> None:
        for t in texts:
            if isinstance(t, str) and t.strip() and t.strip().casefold() not in seen:
                seen.add(t.strip().casefold())
                out.append(t.strip())

    for label, queries in (summary.get("queries") or {}).items():
        add([label, *(queries if isinstance(queries, list) else [])])
    searches = load_searches(root)
    add(s.get("query") for s in searches)
    add(s.get("label") for s in searches)
    for info in (summary.get("related") or {}).values():
        if isinstance(info, dict):
            add(info.get("related_searches") or [])
    for s in searches:
        add(s.get("related_searches") or [])
    for info in (summary.get("related") or {}).values():
        if isinstance(info, dict):
            add(info.get("chips") or [])
    for s in searches:
        add(s.get("suggested_searches") or [])
    return out


def _document(task: TaskLike) -> str:
    texts = list(task) if isinstance(task, (list, tuple)) else task_text(task)
    return " . ".join(texts).lower()


def text_similarity(a: TaskLike, b: TaskLike) -> float:
    """Cosine similarity (0..1) of two tasks' text: dataset folders, or lists of strings.

    TF-IDF over word unigrams/bigrams and character 3–5-grams, fitted on the two texts.
    Two tasks without any text are 0.0 apart in similarity (nothing to compare).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity
    from sklearn.pipeline import FeatureUnion

    da, db = _document(a), _document(b)
    if not da.strip(" .") or not db.strip(" ."):
        return 0.0
    vec = FeatureUnion([("words", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True)),
                        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True))])
    m = vec.fit_transform([da, db])  # each half is unit-norm: the cosine is the mean of the two cosines
    return float(min(1.0, max(0.0, cosine_similarity(m[0], m[1])[0, 0])))


def dup_groups(root: str | os.PathLike) -> dict[str, str]:
    """``{path: dup_group}`` for the images of a dataset that belong to a near-duplicate group.

    The data layer's reader (:func:`workbench.data.folders.read_groups`), which the seeded split uses.
    """
    from ..data.folders import read_groups

    return read_groups(root)
