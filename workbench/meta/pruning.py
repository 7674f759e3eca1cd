"""Learned early stopping: a pruner trained on the run log's own stored learning curves.

Optuna's MedianPruner asks "is this run below the median of the others at this epoch?"; what a
search needs to know is "will this run end *worse than the best run so far*?" — a run above
the median that cannot catch the incumbent is wasted compute. :class:`CurveModel` learns that
from finished runs of past tasks: from a partial validation-accuracy curve (what it is now,
its best so far, its recent slope, how far through its epochs it is) and the reference (the
study's best value), the probability that the run's final value stays at or below the
reference. :class:`LearnedPruner` (an ``optuna.pruners.BasePruner``) prunes when that
probability passes a threshold calibrated on the training curves, so that only a small,
chosen share of runs that *would* have beaten the reference are stopped
(``max_false_prune``). A NaN/inf value prunes at once (the run diverged): that is the
gone-bad detector's job, done here by the same model's caller.

:class:`TrialCallback` is the Lightning side: it reports ``val_accuracy`` after every
validation epoch to an Optuna trial and stops the run (through ``workbench.jobs``'s stop
flag, so the run ends ``stopped``) when the trial should be pruned, recording where.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import optuna

from .replay import trial_value

__all__ = ["CurveModel", "LearnedPruner", "TrialCallback", "PruneRecord", "curve_features", "curves_from"]

#: Reference points per run when building training samples: quantiles of the task's final values.
REFERENCE_QUANTILES = (0.6, 0.8, 0.9, 0.95, 1.0)


def curve_features(partial: Sequence[float], reference: float, reference_curve: Sequence[float],
                   max_epochs: int) -> list[float]:
    """Features of a partial curve against the reference run (its value and its curve at the same epoch)."""
    a = [float(v) for v in partial]
    e = len(a)
    r = [float(v) for v in reference_curve[:e]] or [reference]
    now, best = a[-1], max(a)
    prev = a[-2] if e >= 2 else now
    prev3 = a[-4] if e >= 4 else a[0]
    return [e / max_epochs, now - reference, best - reference, now - r[-1], best - max(r), now - prev,
            (now - prev3) / min(3, max(e - 1, 1)), reference - r[-1], reference]


def curves_from(source: Any) -> list[tuple[str, list[list[float]], int]]:
    """(task, full validation curves, planned epochs) per task, from a MetaDataset or ReplayTasks."""
    tasks = source.tasks.values() if hasattr(source, "tasks") else source
    out = []
    for t in tasks:
        curves = [c.val_accuracy for c in t.curves.values() if all(math.isfinite(v) for v in c.val_accuracy)]
        if curves:
            out.append((t.name, curves, max(len(c) for c in curves)))
    return out


class CurveModel:
    """P(final value ≤ reference | partial curve, reference), a gradient-boosted classifier.

    Args:
        max_false_prune: calibrates :attr:`threshold` so that at most this share of training
            runs that end above their reference would ever have been pruned.
        min_epochs: never prune before this many epochs were seen.
    """

    def __init__(self, max_false_prune: float = 0.1, min_epochs: int = 1, seed: int = 0,
                 quantiles: Sequence[float] = REFERENCE_QUANTILES) -> None:
        if not 0 < max_false_prune < 1:
            raise ValueError(f"max_false_prune = {max_false_prune!r}: expected a share in (0, 1)")
        self.max_false_prune = max_false_prune
        self.min_epochs = max(1, int(min_epochs))
        self.seed = seed
        self.quantiles = tuple(quantiles)
        self.model: Any = None
        self.threshold = 1.0
        self.thresholds: dict[float, float] = {}
        self.n_tasks = 0
        self.n_curves = 0

    def _samples(self, tasks: list[tuple[str, list[list[float]], int]]):
        X, y, group, task_of = [], [], [], []
        gid = 0
        for ti, (_, curves, E) in enumerate(tasks):
            finals = np.array([trial_value(c) for c in curves])
            # reference runs: the runs at high quantiles of the task's values (a study's best is high)
            refs = sorted({int(np.argmin(np.abs(finals - np.quantile(finals, q)))) for q in self.quantiles})
            for j, c in enumerate(curves):
                for ri in refs:
                    if ri == j:
                        continue
                    for e in range(self.min_epochs, len(c)):
                        X.append(curve_features(c[:e], finals[ri], curves[ri], E))
                        y.append(int(finals[j] <= finals[ri] + 1e-9))
                        group.append(gid)
                        task_of.append(ti)
                    gid += 1
        return np.array(X), np.array(y), np.array(group), np.array(task_of)

    def fit(self, source: Any) -> "CurveModel":
        """Train on the finished curves of past tasks (a MetaDataset, ReplayTasks or ``curves_from`` rows)."""
        from threadpoolctl import threadpool_limits

        tasks = source if isinstance(source, list) and source and isinstance(source[0], tuple) else curves_from(source)
        if not tasks:
            raise ValueError("CurveModel.fit: no finished learning curves to learn from")
        X, y, group, task_of = self._samples(tasks)
        if len(set(y)) < 2:
            raise ValueError("CurveModel.fit: every training run ends on the same side of its reference")
        with threadpool_limits(1):  # OpenMP threads collapse when the cores are shared
            return self._fit(X, y, group, task_of, len(tasks), sum(len(c) for _, c, _ in tasks))

    def _fit(self, X, y, group, task_of, n_tasks: int, n_curves: int) -> "CurveModel":
        from sklearn.ensemble import HistGradientBoostingClassifier

        def model():
            return HistGradientBoostingClassifier(max_iter=60, learning_rate=0.1, max_leaf_nodes=15,
                                                  random_state=self.seed)

        # calibrate on out-of-task predictions (in-sample probabilities are over-confident): a run is
        # pruned at its first epoch above the threshold, so the threshold is the (1 - max_false_prune)
        # quantile of the highest probability each would-have-won run ever gets
        p = np.zeros(len(y))
        folds = min(4, n_tasks)
        if folds >= 2:
            from sklearn.model_selection import GroupKFold

            for tr, te in GroupKFold(n_splits=folds).split(X, y, task_of):
                if len(set(y[tr])) < 2:
                    continue
                p[te] = model().fit(X[tr], y[tr]).predict_proba(X[te])[:, 1]
        self.model = model().fit(X, y)
        if folds < 2:
            p = self.model.predict_proba(X)[:, 1]
        self.thresholds = self._calibrate(p, y, group, X[:, 0])
        self.threshold = float(np.mean(list(self.thresholds.values())))
        self.n_tasks, self.n_curves = n_tasks, n_curves
        return self

    def _calibrate(self, p, y, group, progress) -> dict[float, float]:
        """Per-epoch thresholds at one quantile level of the would-have-won runs' probabilities.

        Early epochs are noisier than late ones, so one threshold would either prune nothing
        early or too much late. The level is bisected so that the share of would-have-won runs
        pruned at *any* epoch is ``max_false_prune``.
        """
        good = y == 0
        steps = np.unique(progress)
        if not good.any():
            return {float(s): 0.99 for s in steps}
        by_step = {s: np.sort(p[good & (progress == s)]) for s in steps}
        groups = group[good]
        lo, hi = 0.5, 1.0
        for _ in range(30):
            q = (lo + hi) / 2
            thr = {s: (float(np.quantile(v, q)) if len(v) else 1.0) for s, v in by_step.items()}
            t = np.array([thr[s] for s in progress[good]])
            pruned = np.zeros(group.max() + 1, dtype=bool)
            np.logical_or.at(pruned, groups, p[good] >= t)
            rate = pruned[np.unique(groups)].mean()
            lo, hi = (q, hi) if rate > self.max_false_prune else (lo, q)
        return {float(s): min(max(thr[s], 0.5), 0.999) for s in steps}

    def threshold_at(self, epochs_seen: int, max_epochs: int) -> float:
        """The calibrated threshold nearest to this point of a run's epochs."""
        f = epochs_seen / max_epochs
        s = min(self.thresholds, key=lambda k: abs(k - f))
        return self.thresholds[s]

    def prob_worse(self, partial: Sequence[float], reference: float, reference_curve: Sequence[float],
                   max_epochs: int) -> float:
        """P(the run ends at or below the reference run, whose value and curve are given)."""
        if self.model is None:
            raise RuntimeError("CurveModel: call fit() first")
        x = np.array([curve_features(partial, reference, reference_curve, max_epochs)])
        return float(self.model.predict_proba(x)[0, 1])

    def should_stop(self, partial: Sequence[float], reference: float, reference_curve: Sequence[float],
                    max_epochs: int) -> bool:
        """Stop when the run diverged, or it will very likely not beat the reference run."""
        if any(not math.isfinite(v) for v in partial):
            return True
        if len(partial) < self.min_epochs or len(partial) >= max_epochs:
            return False
        return self.prob_worse(partial, reference, reference_curve, max_epochs) >= self.threshold_at(len(partial),
                                                                                                   max_epochs)


class LearnedPruner(optuna.pruners.BasePruner):
    """An Optuna pruner backed by a :class:`CurveModel` (reference = best own finished trial).

    Trials carrying the user attribute ``prior`` (warm-start evidence from other tasks) never
    count as the reference: their values are on another task's scale.
    """

    def __init__(self, model: CurveModel, max_epochs: int, n_startup_trials: int = 1) -> None:
        if max_epochs < 2:
            raise ValueError(f"max_epochs = {max_epochs!r}: a curve needs at least 2 epochs to prune")
        self.model = model
        self.max_epochs = int(max_epochs)
        self.n_startup_trials = int(n_startup_trials)

    def prune(self, study: Any, trial: Any) -> bool:
        """Optuna's pruner hook."""
        iv = trial.intermediate_values
        if not iv:
            return False
        partial = [iv[k] for k in sorted(iv)]
        if any(not math.isfinite(v) for v in partial):
            return True
        own = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
               if not t.user_attrs.get("prior") and t.value is not None]
        if len(own) < self.n_startup_trials:
            return False
        ref = max(own, key=lambda t: t.value)
        curve = [ref.intermediate_values[k] for k in sorted(ref.intermediate_values)] or [ref.value]
        return self.model.should_stop(partial, ref.value, curve, self.max_epochs)


@dataclass
class PruneRecord:
    """Where and why a trial was pruned (stored in the run record's ``pruned`` field)."""

    epoch: int
    value: float
    reference: float | None
    pruner: str


def __getattr__(name: str) -> Any:
    # TrialCallback is a Lightning class: built on first use, so replaying searches never imports Lightning
    if name == "TrialCallback":
        return _trial_callback()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.lru_cache(maxsize=1)
def _trial_callback() -> type:
    import pytorch_lightning as pl

    class TrialCallback(pl.Callback):
        """Lightning callback: report ``val_accuracy`` per epoch to ``trial``; stop the run when pruned.

        ``stop_flag`` is the ``workbench.jobs.StopFlag`` given to ``run_training`` so that a pruned
        run ends ``stopped`` (with its checkpoint). After fit, ``pruned`` says whether it was and
        ``record`` where (epoch, value, reference, pruner).
        """

        def __init__(self, trial: Any, stop_flag: Any = None, monitor: str = "val_accuracy") -> None:
            super().__init__()
            self.trial = trial
            self.stop_flag = stop_flag
            self.monitor = monitor
            self.values: list[float] = []
            self.pruned = False
            self.record: PruneRecord | None = None

        def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if getattr(trainer, "sanity_checking", False) or self.pruned:
                return
            v = trainer.callback_metrics.get(self.monitor)
            if v is None:
                return
            value = float(v)
            epoch = int(trainer.current_epoch)
            self.values.append(value)
            self.trial.report(value if math.isfinite(value) else float("nan"), epoch)
            if self.trial.should_prune():
                self.pruned = True
                ref = None
                try:
                    ref = float(self.trial.study.best_value)
                except Exception:
                    pass
                self.record = PruneRecord(epoch, value, ref, type(self.trial.study.pruner).__name__)
                trainer.should_stop = True
                if self.stop_flag is not None:
                    self.stop_flag.set()

    return TrialCallback
