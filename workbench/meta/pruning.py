"""Learned early stopping: one model of learning curves, for the tuner's pruner and for runs gone bad.

Optuna's MedianPruner asks "is this run below the median of the others at this epoch?"; what a
search needs to know is "will this run end *worse than the best run so far*?" — a run above
the median that cannot catch the incumbent is wasted compute. :class:`CurveModel` learns that
from finished runs of past tasks: the probability that a run's final value stays at or below a
reference run's, from

- the partial validation-accuracy curve against the reference's curve at the same epoch (now,
  best so far, recent slope, progress through the planned epochs);
- the configuration (each search-space key as a number: log lr, width, augmentation choice …);
- the memory (:class:`TaskMemory`): how the nearest stored configuration went on the ``k`` past
  tasks most like this one — its normalised final value there and how much it still gained
  after this point of its curve (a low learning rate starts slowly *and* keeps climbing).

With ``flat_line=True`` it also learns against each task's flat line (a run that will end near
chance has gone bad): that is the model :class:`workbench.meta.gonebad.GoneBadCallback` watches
single runs with, curve features only. Per-epoch stop thresholds are calibrated on out-of-task predictions (group k-fold by task) so
that at most ``max_false_prune`` of the training runs that *would* have beaten their reference
are ever stopped. A NaN/inf value stops at once (the run diverged).

:class:`LearnedPruner` is the ``optuna.pruners.BasePruner`` (reference = the study's best own
trial); :class:`TrialCallback` is the Lightning side: it reports ``val_accuracy`` after every
validation epoch to an Optuna trial and stops the run (through ``workbench.jobs``'s stop flag, so
the run ends ``stopped``) when the trial should be pruned, recording where.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import optuna

from .replay import ReplayTask
from .space import SearchSpace
from .taskmemory import N_MEMORY, TaskMemory, config_vector, neighbours

__all__ = ["CurveModel", "LearnedPruner", "TrialCallback", "PruneRecord", "TaskMemory", "curve_features",
           "config_vector", "fitted_model", "FLAT_SHARE"]

#: Reference points per run when building training pairs: quantiles of the task's final values
#: (a study's best sits high).
REFERENCE_QUANTILES = (0.6, 0.8, 0.9, 0.95, 1.0)
#: The "flat line" reference of every training task: chance plus this share of the way to a
#: perfect score. A run that will not end above it has learned (next to) nothing.
FLAT_SHARE = 0.1
N_CURVE = 9


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


def _chance(task: ReplayTask) -> float | None:
    lc = (task.features.get("scalars") or {}).get("log_classes") if task.features else None
    return None if lc is None else 1.0 / math.exp(lc)


class CurveModel:
    """P(final value ≤ reference | partial curve, reference, configuration, memory): gradient boosting.

    Args:
        max_false_prune: calibrates the per-epoch thresholds so that at most this share of training
            runs that end above their reference would ever have been stopped (out-of-task predictions).
        min_epochs: never stop before this many epochs were seen.
        k: past tasks in a task's memory.
        memory: use the configuration and memory features (off: the partial curve only).
        flat_line: also learn against each task's flat line (chance plus :data:`FLAT_SHARE` of the way
            to a perfect score), so the model can call a run that will learn nothing without any
            reference run (the gone-bad callback's model).
    """

    def __init__(self, max_false_prune: float = 0.3, min_epochs: int = 1, seed: int = 0,
                 quantiles: Sequence[float] = REFERENCE_QUANTILES, k: int = 3, memory: bool = True,
                 flat_line: bool = False) -> None:
        if not 0 < max_false_prune < 1:
            raise ValueError(f"max_false_prune = {max_false_prune!r}: expected a share in (0, 1)")
        self.max_false_prune = max_false_prune
        self.min_epochs = max(1, int(min_epochs))
        self.seed = seed
        self.quantiles = tuple(quantiles)
        self.k = int(k)
        self.use_memory = bool(memory)
        self.flat_line = bool(flat_line)
        self.model: Any = None
        self.space: SearchSpace | None = None
        self.tasks: list[ReplayTask] = []
        self.threshold = 1.0
        self.thresholds: dict[float, float] = {}
        self.n_tasks = 0
        self.n_curves = 0

    # -- features ---------------------------------------------------------------------------
    def features(self, partial: Sequence[float], reference: float, reference_curve: Sequence[float],
                 max_epochs: int, params: Mapping[str, Any] | None = None,
                 memory: TaskMemory | None = None) -> list[float]:
        """The model's input row (configuration and memory NaN when not given)."""
        f = curve_features(partial, reference, reference_curve, max_epochs)
        if not self.use_memory:
            return f
        # a configuration off the space or a task without neighbours: NaN (the trees send it one way)
        f += config_vector(self.space, params) if params is not None else [math.nan] * len(self.space or ())
        f += memory.features(params, len(partial), max_epochs) if (memory is not None and params is not None) \
            else [math.nan] * N_MEMORY
        return f

    def _run_extras(self, params: Mapping[str, Any], memory: TaskMemory | None, E: int):
        """Per-epoch configuration + memory features of one stored run (what :meth:`features` appends)."""
        if not self.use_memory:
            return lambda e: []
        cfg = config_vector(self.space, params)
        if memory is None:
            return lambda e: cfg + [math.nan] * N_MEMORY
        gain, norm = memory.profile(params, E)
        return lambda e: cfg + [float(gain[min(e, E) - 1]), norm]

    def memory_for(self, features: Mapping[str, Any], exclude: str | None = None) -> TaskMemory | None:
        """The memory of a task with these meta-features: its ``k`` nearest training tasks."""
        if not self.use_memory or self.space is None:
            return None
        nbs = neighbours(features, [t for t in self.tasks if t.name != exclude], self.k)
        return TaskMemory(nbs, self.space) if nbs else None

    def _samples(self, tasks: list[ReplayTask]):
        X, y, group, task_of = [], [], [], []
        gid = 0
        for ti, t in enumerate(tasks):
            memory = self.memory_for(t.features, exclude=t.name)
            runs = [c for c in t.curves.values() if all(math.isfinite(v) for v in c.val_accuracy)]
            if len(runs) < 2:
                continue
            E = max(c.epochs for c in runs)
            finals = np.array([c.value for c in runs])
            refs = [(float(finals[i]), runs[i].val_accuracy, i) for i in
                    sorted({int(np.argmin(np.abs(finals - np.quantile(finals, q)))) for q in self.quantiles})]
            if self.flat_line and _chance(t) is not None:  # what a run that learned (next to) nothing ends at
                flat, flat_curve = self.flat_reference(round(1 / _chance(t)), E)
                refs.append((flat, flat_curve, -1))
            for j, c in enumerate(runs):
                extras = self._run_extras(c.params, memory, E)  # the same as features() appends, computed once
                for ref, ref_curve, ri in refs:
                    if ri == j:
                        continue
                    for e in range(self.min_epochs, c.epochs):
                        X.append(curve_features(c.val_accuracy[:e], ref, ref_curve, E) + extras(e))
                        y.append(int(finals[j] <= ref + 1e-9))
                        group.append(gid)
                        task_of.append(ti)
                    gid += 1
        return np.array(X, dtype=float), np.array(y), np.array(group), np.array(task_of)

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, source: Any, space: SearchSpace | None = None) -> "CurveModel":
        """Train on the finished curves of past tasks (a MetaDataset, or ReplayTasks with ``space``)."""
        from threadpoolctl import threadpool_limits

        tasks = list(source.tasks.values()) if hasattr(source, "tasks") else list(source)
        self.space = space or getattr(source, "space", None)
        if self.use_memory and self.space is None:
            raise ValueError("CurveModel.fit: the memory features need the search space (pass space=)")
        self.tasks = [t for t in tasks if t.curves]
        if not self.tasks:
            raise ValueError("CurveModel.fit: no finished learning curves to learn from")
        X, y, group, task_of = self._samples(self.tasks)
        if len(set(y)) < 2:
            raise ValueError("CurveModel.fit: every training run ends on the same side of its reference")
        with threadpool_limits(1):  # OpenMP threads collapse when the cores are shared
            self._fit(X, y, group, task_of)
        self.n_tasks, self.n_curves = len(self.tasks), sum(len(t.curves) for t in self.tasks)
        return self

    def _fit(self, X, y, group, task_of) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier

        def model():
            return HistGradientBoostingClassifier(max_iter=60, learning_rate=0.1, max_leaf_nodes=15,
                                                  random_state=self.seed)

        # calibrate on out-of-task predictions (in-sample probabilities are over-confident)
        n_tasks = len(set(task_of.tolist()))
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

    def _calibrate(self, p, y, group, progress) -> dict[float, float]:
        """Per-epoch thresholds at one quantile level of the would-have-won runs' probabilities.

        A run is stopped at its first epoch above the threshold, and early epochs are noisier than
        late ones, so one threshold would either stop nothing early or too much late. The level is
        bisected so that the share of would-have-won runs stopped at *any* epoch is ``max_false_prune``.
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

    # -- deciding ---------------------------------------------------------------------------
    def threshold_at(self, epochs_seen: int, max_epochs: int) -> float:
        """The calibrated threshold nearest to this point of a run's epochs."""
        f = epochs_seen / max_epochs
        s = min(self.thresholds, key=lambda k: abs(k - f))
        return self.thresholds[s]

    def prob_worse(self, partial: Sequence[float], reference: float, reference_curve: Sequence[float],
                   max_epochs: int, params: Mapping[str, Any] | None = None,
                   memory: TaskMemory | None = None) -> float:
        """P(the run ends at or below the reference run, whose value and curve are given)."""
        if self.model is None:
            raise RuntimeError("CurveModel: call fit() first")
        x = np.array([self.features(partial, reference, reference_curve, max_epochs, params, memory)], dtype=float)
        return float(self.model.predict_proba(x)[0, 1])

    def should_stop(self, partial: Sequence[float], reference: float, reference_curve: Sequence[float],
                    max_epochs: int, params: Mapping[str, Any] | None = None,
                    memory: TaskMemory | None = None) -> bool:
        """Stop when the run diverged, or it will very likely not beat the reference run."""
        if any(not math.isfinite(v) for v in partial):
            return True
        if len(partial) < self.min_epochs or len(partial) >= max_epochs:
            return False
        p = self.prob_worse(partial, reference, reference_curve, max_epochs, params, memory)
        return p >= self.threshold_at(len(partial), max_epochs)

    def flat_reference(self, n_classes: int, max_epochs: int) -> tuple[float, list[float]]:
        """The flat-line reference (value and curve) of a task with ``n_classes`` classes."""
        chance = 1.0 / max(1, n_classes)
        flat = chance + FLAT_SHARE * (1 - chance)
        return flat, [flat] * max_epochs


class LearnedPruner(optuna.pruners.BasePruner):
    """An Optuna pruner backed by a :class:`CurveModel` (reference = best own finished trial).

    ``memory`` (:meth:`CurveModel.memory_for` of the task being tuned) adds how each proposed
    configuration went on the nearest past tasks. Trials carrying the user attribute ``prior``
    (warm-start evidence from other tasks) never count as the reference: their values are on
    another task's scale.
    """

    def __init__(self, model: CurveModel, max_epochs: int, n_startup_trials: int = 1,
                 memory: TaskMemory | None = None) -> None:
        if max_epochs < 2:
            raise ValueError(f"max_epochs = {max_epochs!r}: a curve needs at least 2 epochs to prune")
        self.model = model
        self.max_epochs = int(max_epochs)
        self.n_startup_trials = int(n_startup_trials)
        self.memory = memory

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
        return self.model.should_stop(partial, ref.value, curve, self.max_epochs, dict(trial.params), self.memory)


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



_FITTED: dict[tuple, CurveModel] = {}


def fitted_model(history: Any, **settings: Any) -> CurveModel:
    """A :class:`CurveModel` fitted on ``history`` (a MetaDataset), reused while the same runs are asked for again.

    The key is every task's name and its runs' ids, values and lengths (and the settings), so a run log that gained a
    finished run gets a new model; a process keeps at most 4.
    """
    key = (tuple(sorted((n, tuple(sorted((str(c.run_id), round(c.value, 9), c.epochs) for c in t.curves.values())))
                        for n, t in history.tasks.items())), tuple(sorted(settings.items())))
    if key not in _FITTED:
        if len(_FITTED) >= 4:
            _FITTED.pop(next(iter(_FITTED)))
        _FITTED[key] = CurveModel(**settings).fit(history)
    return _FITTED[key]
