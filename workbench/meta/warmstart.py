"""Warm start: seed an Optuna study with what the nearest past tasks learned.

Given the new task's meta-features and the past tasks' runs (a run log, an export, or a
:class:`~workbench.meta.replay.MetaDataset`):

1. **Nearest tasks.** Standardised meta-features (:func:`workbench.meta.recommend.task_distances`:
   scalars plus the fixed backbone's embedding direction); when the new task is a scraped dataset
   with text (queries, related searches, chips), :func:`neighbour_distances` adds how unlike the
   past tasks' text is (``benchmarks/bench_retrieval.py`` measured it); the ``k`` nearest,
   weighted by ``1 / distance``.
2. **Out of distribution?** ``ood_score`` = distance to the nearest past task ÷ the median of
   the past tasks' own nearest-neighbour distances. Above ``ood_threshold`` the task is unlike
   anything stored: :attr:`WarmStart.cold` is set, nothing is enqueued, and the reason says so.
3. **Enqueued configurations** (``study.enqueue_trial``): grid points ranked by their
   similarity-weighted *normalised* value on the neighbours (0 = that task's median run,
   1 = its best run), so a configuration good on all neighbours beats one lucky on one.
4. **Prior trials** (``study.add_trials``, optional: ``tune(priors=True)``; the README's ablation
   found no gain over enqueuing alone): the neighbours' runs as finished trials, their
   values re-scaled onto the new task's expected range (the neighbours' weighted median → best
   range), tagged ``prior`` so the search's own best, budget and pruner ignore them; the
   least similar are added first, so TPE's recency weights trust them least.

:func:`warm_start_configs` returns the proposals with their evidence without running anything.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .replay import MetaDataset, ReplayTask
from .space import SearchSpace

__all__ = ["WarmStart", "warm_start", "warm_start_configs", "global_prior", "ood_score", "normalised_values",
           "neighbour_distances", "TEXT_WEIGHT"]

OOD_THRESHOLD = 2.5
#: Weight of the text term in :func:`neighbour_distances` (image distances are scaled to median 1).
TEXT_WEIGHT = 1.0


def normalised_values(task: ReplayTask) -> dict[str, float]:
    """Per grid point: 0 at the task's median run, 1 at its best (below the median goes negative)."""
    vals = [c.value for c in task.curves.values()]
    med, top = statistics.median(vals), max(vals)
    span = (top - med) or 1.0
    return {k: (c.value - med) / span for k, c in task.curves.items()}


def neighbour_distances(new: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]],
                        text_weight: float = TEXT_WEIGHT) -> list[float]:
    """Distances from meta-features ``new`` to each of ``tasks``, text included when ``new`` has any.

    Image part: :func:`~workbench.meta.recommend.task_distances` divided by its median over
    ``tasks`` (so the two parts share a scale). Text part: ``text_weight × (1 − similarity)`` of
    the two tasks' ``text`` (:func:`workbench.scrape.text_similarity`; a past task without text
    counts as similarity 0). Without text on the new task, or with ``text_weight=0``, this is
    the image distance alone, unscaled.
    """
    from .recommend import task_distances

    d = task_distances(new, list(tasks))
    if not text_weight or not new.get("text") or not d:
        return d
    from ..scrape import text_similarity

    med = statistics.median(d) or 1.0
    return [di / med + text_weight * (1.0 - (text_similarity(new["text"], t["text"]) if t.get("text") else 0.0))
            for di, t in zip(d, tasks)]


def _distances(new: Mapping[str, Any], tasks: Sequence[ReplayTask], text_weight: float = TEXT_WEIGHT) -> list[float]:
    return neighbour_distances(new, [t.features for t in tasks], text_weight)


def ood_score(new: Mapping[str, Any], tasks: Sequence[ReplayTask]) -> float:
    """Distance to the nearest past task ÷ median nearest-neighbour distance among past tasks."""
    import numpy as np

    from .recommend import feature_vectors

    if len(tasks) < 2:
        return math.inf
    V = feature_vectors([new, *[t.features for t in tasks]])
    D = np.linalg.norm(V[:, None, :] - V[None, :, :], axis=2)
    past = D[1:, 1:] + np.eye(len(tasks)) * 1e12
    typical = float(np.median(past.min(axis=1)))
    return float(D[0, 1:].min() / (typical or 1e-12))


@dataclass
class WarmStart:
    """What the memory proposes for a new task, and why."""

    neighbours: list[dict]  # {"task", "family", "distance", "weight", "best_value", "n_runs"}
    configs: list[dict]  # {"params", "score", "evidence": {task: normalised value}}
    prior_trials: list[Any] = field(default_factory=list)
    ood: float = 0.0
    cold: bool = False
    reason: str = ""
    n_enqueue: int = 3

    def enqueue(self, n: int | None = None) -> list[dict]:
        """The grid points to try first (labels), best first (none on a cold start)."""
        return [c["params"] for c in self.configs[:n or self.n_enqueue]] if not self.cold else []

    def frame(self):
        """The proposals as a DataFrame (params, score, per-neighbour evidence)."""
        import pandas as pd

        rows = [{**c["params"], "score": c["score"], **{f"on {k}": v for k, v in c["evidence"].items()}}
                for c in self.configs]
        return pd.DataFrame(rows)

    def explain(self) -> str:
        """A few lines for people."""
        if self.cold:
            return self.reason
        lines = [self.reason]
        for nb in self.neighbours:
            lines.append(f"  {nb['task']}: distance {nb['distance']:.2f}, weight {nb['weight']:.2f}, "
                         f"best {nb['best_value']:.3f} over {nb['n_runs']} runs")
        for c in self.configs[:3]:
            lines.append(f"  try {c['params']} (score {c['score']:.2f})")
        return "\n".join(lines)


def _rank(tasks: Sequence[ReplayTask], weights: Sequence[float]) -> list[dict]:
    wsum = sum(weights) or 1.0
    norm = [normalised_values(t) for t in tasks]
    keys = set().union(*norm)
    ranked = []
    for key in keys:
        ev = {t.name: n[key] for t, n in zip(tasks, norm) if key in n}
        # a point missing on a neighbour counts as that task's median (0): evidence must be earned
        score = sum(w * n.get(key, 0.0) for w, n in zip(weights, norm)) / wsum
        params = next(t.curves[key].params for t in tasks if key in t.curves)
        ranked.append({"key": key, "params": dict(params), "score": score, "evidence": ev})
    ranked.sort(key=lambda r: (-r["score"], r["key"]))
    return ranked


def _prior_trials(tasks: Sequence[ReplayTask], weights: Sequence[float], space: SearchSpace) -> list[Any]:
    import optuna

    wsum = sum(weights) or 1.0
    lo = sum(w * statistics.median([c.value for c in t.curves.values()]) for t, w in zip(tasks, weights)) / wsum
    hi = sum(w * t.oracle for t, w in zip(tasks, weights)) / wsum
    out = []
    for t, w in sorted(zip(tasks, weights), key=lambda tw: tw[1]):  # least similar first
        for key, n in sorted(normalised_values(t).items()):
            c = t.curves[key]
            out.append(optuna.trial.create_trial(
                params=dict(c.params), distributions=space.distributions(c.params),
                value=float(lo + n * (hi - lo)), user_attrs={"prior": True, "task": t.name, "weight": w / wsum}))
    return out


def warm_start(features: Mapping[str, Any], history: MetaDataset, k: int = 3, n_configs: int = 3,
               prior: bool = True, ood_threshold: float = OOD_THRESHOLD,
               text_weight: float = TEXT_WEIGHT) -> WarmStart:
    """Neighbours, proposals and prior trials for a task with meta-features ``features``.

    ``text_weight``: how much a scraped task's text counts in the neighbour search
    (:func:`neighbour_distances`; 0 = image meta-features only). The out-of-distribution score
    stays on image meta-features.
    """
    tasks = [t for t in history.tasks.values() if t.features and t.curves]
    if not tasks:
        return WarmStart([], [], cold=True, ood=math.inf,
                         reason="cold start: the run log has no past tasks with stored meta-features and curves")
    d = _distances(features, tasks, text_weight)
    ood = ood_score(features, tasks)
    order = sorted(range(len(tasks)), key=lambda i: d[i])[:max(1, k)]
    near = [tasks[i] for i in order]
    weights = [1.0 / (d[i] + 1e-3) for i in order]
    wsum = sum(weights)
    neighbours = [{"task": t.name, "family": t.family, "distance": d[i], "weight": w / wsum,
                   "best_value": t.oracle, "n_runs": len(t.curves)} for t, i, w in zip(near, order, weights)]
    if ood > ood_threshold:
        return WarmStart(neighbours, [], ood=ood, cold=True,
                         reason=f"cold start: the task is unlike every past task (out-of-distribution score "
                                f"{ood:.2f} > {ood_threshold:g}; nearest {near[0].name} at distance {d[order[0]]:.2f})")
    ranked = _rank(near, weights)
    configs = [{"params": r["params"], "score": r["score"], "evidence": r["evidence"]} for r in ranked]
    priors = _prior_trials(near, weights, history.space) if prior else []
    reason = (f"warm start from {len(near)} nearest past task(s) (out-of-distribution score {ood:.2f} ≤ "
              f"{ood_threshold:g}): {n_configs} configuration(s) enqueued" + (f", {len(priors)} prior trials"
                                                                           if priors else ""))
    return WarmStart(neighbours, configs, priors, ood, False, reason, n_configs)


def global_prior(history: MetaDataset, n_configs: int = 3) -> list[dict]:
    """The best recipes averaged over *all* past tasks, equally weighted (the baseline warm start)."""
    tasks = [t for t in history.tasks.values() if t.curves]
    return [r["params"] for r in _rank(tasks, [1.0] * len(tasks))[:n_configs]]


def warm_start_configs(data: Any, k: int = 3, history: Any = None, n: int = 5,
                       space: SearchSpace | None = None) -> WarmStart:
    """Proposed configurations for a dataset folder (or meta-features) with their evidence; runs nothing.

    ``history``: a MetaDataset, an export file, a RunLog or records (default: this
    workbench's run log).
    """
    from .features import task_features

    feats = dict(data) if isinstance(data, Mapping) else task_features(data)
    hist = history if isinstance(history, MetaDataset) else MetaDataset.load(history if history is not None
                                                                              else _default_log(), space)
    ws = warm_start(feats, hist, k=k, n_configs=n, prior=False)
    ws.configs = ws.configs[:n]
    return ws


def _default_log():
    from ..runlog import RunLog

    return RunLog()
