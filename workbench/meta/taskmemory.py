"""The learned pruner's memory: how each configuration went on the past tasks nearest to a new one.

Split out of :mod:`workbench.meta.pruning` (which re-exports these names): a configuration as
numbers (:func:`config_vector`), the nearest past tasks (:func:`neighbours`, the warm start's
neighbour search, text included for scraped tasks) and :class:`TaskMemory`.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from .replay import ReplayTask, trial_value
from .space import SearchSpace

__all__ = ["TaskMemory", "config_vector", "neighbours", "N_MEMORY"]

#: Memory features per row: remaining gain after this point, normalised final value.
N_MEMORY = 2


def config_vector(space: SearchSpace | None, params: Mapping[str, Any] | None) -> list[float]:
    """A configuration as numbers: log10 of log-scaled ranges, the choice's index for categorical keys.

    Keys the configuration does not set (inactive conditional keys) are NaN.
    """
    if space is None:
        return []
    out = []
    for p in space:
        v = None if params is None else params.get(p.key)
        if v is None:
            out.append(math.nan)
        elif p.type == "categorical":
            labels = list(p.choices)
            out.append(float(labels.index(v)) if v in labels else math.nan)
        else:
            out.append(math.log10(v) if p.log and v > 0 else float(v))
    return out


class TaskMemory:
    """How each configuration went on the past tasks nearest to one task (weights sum to 1).

    :meth:`features` of a configuration after ``e`` of ``E`` epochs: the weighted mean, over the
    neighbours, of (a) how much the nearest stored configuration still gained from the same point of
    its curve to its end and (b) its normalised final value there (0 = that task's median run,
    1 = its best).
    """

    def __init__(self, neighbours: Sequence[tuple[ReplayTask, float]], space: SearchSpace) -> None:
        from .warmstart import normalised_values

        self.space = space
        self.names = [t.name for t, _ in neighbours]
        self._tasks = []
        for t, w in neighbours:
            keys = list(t.curves)
            X = np.array([config_vector(space, t.curves[k].params) for k in keys], dtype=float).reshape(len(keys), -1)
            scale = np.nanmax(X, 0) - np.nanmin(X, 0) if len(keys) else np.ones(X.shape[1])
            scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
            self._tasks.append((t, float(w), keys, np.nan_to_num(X / scale, nan=-1.0), scale,
                                normalised_values(t)))
        self._profiles: dict[tuple[str, int], tuple[np.ndarray, float]] = {}

    def _nearest(self, entry: tuple, key: str, x: np.ndarray) -> str:
        t, _, keys, X, scale, _ = entry
        if key in t.curves:
            return key
        d = np.abs(X - np.nan_to_num(x / scale, nan=-1.0)).sum(1)
        return keys[int(np.argmin(d))]

    def features(self, params: Mapping[str, Any], epochs_seen: int, max_epochs: int) -> list[float]:
        """[remaining gain after this point, normalised final value] of this configuration on the neighbours."""
        if not self._tasks:
            return [math.nan] * N_MEMORY
        gain, norm = self.profile(params, max_epochs)
        return [float(gain[min(epochs_seen, max_epochs) - 1]), norm]

    def profile(self, params: Mapping[str, Any], max_epochs: int) -> tuple[np.ndarray, float]:
        """Remaining gain after each of ``max_epochs`` epochs, and the normalised value (weighted; cached)."""
        key = self.space.key_of(params)
        if (key, max_epochs) not in self._profiles:
            self._profiles[key, max_epochs] = self._profile(key, params, max_epochs)
        return self._profiles[key, max_epochs]

    def _profile(self, key: str, params: Mapping[str, Any], max_epochs: int) -> tuple[np.ndarray, float]:
        x = np.array(config_vector(self.space, params), dtype=float)
        gain, norm, wsum = np.zeros(max_epochs), 0.0, 0.0
        for entry in self._tasks:
            t, w, *_, nv = entry
            k = self._nearest(entry, key, x)
            c = np.nan_to_num(np.array(t.curves[k].val_accuracy, dtype=float), nan=0.0)
            # the same point of its curve: epochs are matched by progress when the lengths differ
            idx = np.minimum(len(c), np.maximum(1, np.round(np.arange(1, max_epochs + 1) / max_epochs * len(c))))
            gain += w * (trial_value(c) - c[idx.astype(int) - 1])
            norm += w * nv[k]
            wsum += w
        return gain / wsum, norm / wsum


def neighbours(features: Mapping[str, Any], tasks: Sequence[ReplayTask], k: int) -> list[tuple[ReplayTask, float]]:
    from .warmstart import neighbour_distances

    tasks = [t for t in tasks if t.features and t.curves]
    if not tasks:
        return []
    d = neighbour_distances(features, [t.features for t in tasks])
    order = sorted(range(len(tasks)), key=lambda i: d[i])[:max(1, k)]
    w = [1.0 / (d[i] + 1e-3) for i in order]
    return [(tasks[i], wi / sum(w)) for i, wi in zip(order, w)]
