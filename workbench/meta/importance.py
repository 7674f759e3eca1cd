"""What mattered: hyperparameter importance over a set of runs on one task family.

A random forest maps each run's hyperparameters (the config keys that vary) to its
score; a parameter's importance is how much the forest's fit (R²) gets worse when
that parameter's column is shuffled (permutation importance, scikit-learn).
Categorical values are ordinal-coded: trees split them fine, and shuffling a column
removes its information whatever the coding.

Next to it, ``main_effect`` is the share of the score's variance explained by the
parameter's marginal means alone (η², the first-order term of a functional ANOVA; exact
for a full grid, numeric columns binned by quartile otherwise). A parameter with a large
permutation importance but a small main effect matters through interactions.

Few runs give noisy answers. Below ``min_runs`` (default: ``max(10, 4 × n_params)``)
the result carries a warning, also raised as a :class:`UserWarning`; below 4 runs it is
an error.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ..runlog import RunLog
from .common import as_records, hashable, hparams, lower_is_better, run_score

__all__ = ["Importance", "param_importance", "params_frame", "plot_importance", "TooFewRunsWarning"]


class TooFewRunsWarning(UserWarning):
    """Importance computed from fewer runs than it needs to be trusted."""


@dataclass
class Importance:
    """Importance per hyperparameter (``frame``: param, importance, std, share, main_effect), with provenance."""

    frame: Any
    n_runs: int
    target: str
    params: list[str]
    warning: str | None = None
    r2: float | None = None

    @property
    def top(self) -> str | None:
        """The most important parameter (``None`` when nothing varies)."""
        return str(self.frame.index[0]) if len(self.frame) else None

    def plot(self, ax: Any = None):
        """Horizontal bar plot with error bars (see :func:`plot_importance`)."""
        return plot_importance(self, ax=ax)

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v:.2f}" for k, v in self.frame["share"].items()) if len(self.frame) else "-"
        warn = f", warning={self.warning!r}" if self.warning else ""
        return f"Importance(n_runs={self.n_runs}, target={self.target!r}, {items}{warn})"


def params_frame(runs: Iterable[Any], target: str | None = None, params: Sequence[str] | None = None,
                 log: RunLog | None = None):
    """(X, y): one row per scored run, columns = hyperparameters that vary; y = score.

    Runs without a score (failed, still running) are left out. ``params`` restricts the
    columns to those dotted config keys.
    """
    import pandas as pd

    recs = as_records(runs, log, metrics=False)
    rows, ys, ids = [], [], []
    for rec in recs:
        y = run_score(rec, target)
        if y is None:
            continue
        hp = hparams(rec.get("config") or {})
        rows.append({k: hashable(v) for k, v in hp.items()})
        ys.append(y)
        ids.append(rec["id"])
    X = pd.DataFrame(rows, index=ids)
    if params is not None:
        unknown = [p for p in params if p not in X.columns]
        if unknown:
            raise ValueError(f"params: {unknown} not in the runs' configs; available: {', '.join(X.columns)}")
        X = X[list(params)]
    else:
        varying = [c for c in X.columns if X[c].astype(str).nunique(dropna=False) > 1]
        X = X[varying]
    return X, pd.Series(ys, index=ids, name=target or "score")


def _encode(X):
    """Numbers stay numbers; anything else becomes ordinal codes (sorted by string)."""
    import pandas as pd

    out = pd.DataFrame(index=X.index)
    for c in X.columns:
        col = X[c]
        num = pd.to_numeric(col, errors="coerce")
        if num.notna().all() and not col.map(lambda v: isinstance(v, bool)).any():
            out[c] = num.astype(float)
        else:
            cats = sorted(col.astype(str).unique())
            out[c] = col.astype(str).map({v: i for i, v in enumerate(cats)}).astype(float)
    return out


def param_importance(runs: Iterable[Any], target: str | None = None, params: Sequence[str] | None = None,
                     min_runs: int | None = None, n_repeats: int = 10, seed: int = 0,
                     log: RunLog | None = None) -> Importance:
    """Permutation importance of each varying hyperparameter for the runs' score.

    Args:
        runs: run ids / names / records (e.g. ``log.find(tag="sweep:lr-bs")``).
        target: summary key to explain (default: the run score, test accuracy first).
        params: dotted config keys to consider (default: every key that varies).
        min_runs: below this, the result carries a warning (default ``max(10, 4 × n_params)``).
        n_repeats: shuffles per parameter.
        seed: forest and shuffles.
    """
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    X, y = params_frame(runs, target, params, log)
    n = len(y)
    if n < 4:
        raise ValueError(f"param_importance: {n} scored runs; need at least 4 (and ~10+ to trust the answer)")
    if X.shape[1] == 0:
        raise ValueError("param_importance: no hyperparameter varies across these runs")
    if target and lower_is_better(target):
        y = -y  # importance is symmetric, but keep "higher is better" everywhere
    need = min_runs if min_runs is not None else max(10, 4 * X.shape[1])
    warning = None
    if n < need:
        warning = (f"only {n} runs for {X.shape[1]} parameters (want ≥ {need}): importances are noisy; "
                   f"run more variants before trusting the ranking")
        warnings.warn(warning, TooFewRunsWarning, stacklevel=2)
    Xe = _encode(X)
    forest = RandomForestRegressor(n_estimators=100, min_samples_leaf=1, random_state=seed, n_jobs=1)
    forest.fit(Xe.values, y.values)
    r2 = float(forest.score(Xe.values, y.values))
    if float(np.var(y.values)) == 0.0:
        imp = np.zeros(X.shape[1])
        std = np.zeros(X.shape[1])
        warning = (warning + "; " if warning else "") + "every run has the same score: nothing mattered"
    else:
        res = permutation_importance(forest, Xe.values, y.values, n_repeats=n_repeats, random_state=seed,
                                     n_jobs=1)
        imp = np.clip(res.importances_mean, 0, None)
        std = res.importances_std
    total = float(imp.sum())
    frame = pd.DataFrame({"importance": imp, "std": std,
                          "share": imp / total if total > 0 else np.zeros_like(imp),
                          "main_effect": [_eta_squared(Xe[c], y) for c in X.columns]}, index=list(X.columns))
    frame.index.name = "param"
    frame = frame.sort_values("importance", ascending=False)
    return Importance(frame, n, target or "score", list(X.columns), warning,
                      r2 if math.isfinite(r2) else None)


def _eta_squared(x, y) -> float:
    """Share of the score's variance explained by one parameter's marginal means (η², a
    first-order functional-ANOVA term); numeric columns with many values are binned by quartile."""
    import pandas as pd

    if x.nunique() > 6:
        x = pd.qcut(x.rank(method="first"), 4, labels=False)
    total = float(((y - y.mean()) ** 2).sum())
    if total == 0:
        return 0.0
    g = y.groupby(x.values)
    between = float((g.count() * (g.mean() - y.mean()) ** 2).sum())
    return between / total


def plot_importance(imp: Importance, ax: Any = None):
    """Bar plot of importance shares (± std), the warning in the title when there is one."""
    import matplotlib.pyplot as plt

    f = imp.frame.iloc[::-1]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.4 * len(f) + 1.2))
    total = float(imp.frame["importance"].sum()) or 1.0
    ax.barh(list(map(str, f.index)), f["share"], xerr=f["std"] / total, color="#4c72b0", alpha=0.85)
    ax.set_xlabel(f"share of permutation importance for {imp.target} ({imp.n_runs} runs)")
    title = "What mattered"
    if imp.warning:
        title += "\n⚠ " + imp.warning[:90] + ("…" if len(imp.warning) > 90 else "")
    ax.set_title(title, fontsize=9)
    ax.set_xlim(0, 1.05)
    return ax
