"""Tabular-benchmark replay: run an Optuna search against stored learning curves in seconds.

The meta-dataset (``benchmarks/data/metadataset.jsonl.gz``) holds, for every task, a run of
every configuration of a grid with its full per-epoch validation curve. A replayed trial is a
*lookup*: the sampler suggests a grid point, the objective reads that point's stored curve
epoch by epoch, reports each value to the trial (so any pruner can stop it) and counts every
epoch read as one epoch of compute. This is how LCBench / HPO-B / YAHPO measure HPO methods.

    md = MetaDataset.load("benchmarks/data/metadataset.jsonl.gz")
    task = md.tasks["dots-b"]
    result = replay(task, sampler=optuna.samplers.TPESampler(seed=0), pruner=MedianPruner(),
                    budget_epochs=240)
    result.anytime()          # (epochs spent, best-so-far value) after every trial

The trial value is the run's mean validation accuracy over its last 3 epochs (one lucky epoch on
a validation split of ~100 images is noise); the test accuracy of the incumbent is reported next
to it, never used to select. A configuration already evaluated in the same study is answered
from the study (a real study would not train the same command twice), so it costs no epochs;
after two such repeats in a row the driver enqueues an untried grid point (seeded), so a sampler
that keeps proposing what it knows cannot stall the search.
"""
from __future__ import annotations

import gzip
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .space import SearchSpace, metadataset_space

__all__ = ["Curve", "ReplayTask", "MetaDataset", "ReplayResult", "replay", "read_records", "trial_value"]


#: Epochs averaged for a trial's value: one lucky epoch on a small validation split is noise.
VALUE_EPOCHS = 3


def trial_value(curve: Iterable[float]) -> float:
    """What a trial scores: its mean validation accuracy over the last 3 epochs (NaN counts as 0)."""
    vals = [v if v is not None and math.isfinite(v) else 0.0 for v in curve]
    tail = vals[-VALUE_EPOCHS:]
    return sum(tail) / len(tail) if tail else 0.0


@dataclass
class Curve:
    """One stored run: its grid point (labels), per-epoch validation curve and test accuracy."""

    params: dict[str, Any]
    val_accuracy: list[float]
    val_loss: list[float]
    test_accuracy: float | None
    seconds: float | None = None
    run_id: str | None = None

    @property
    def value(self) -> float:
        """The trial value of the full run."""
        return trial_value(self.val_accuracy)

    @property
    def epochs(self) -> int:
        return len(self.val_accuracy)


@dataclass
class ReplayTask:
    """A task of the meta-dataset: its meta-features and one curve per grid point."""

    name: str
    family: str | None
    features: dict
    curves: dict[str, Curve] = field(default_factory=dict)  # space.key_of(params) → curve

    @property
    def oracle(self) -> float:
        """The best trial value on the grid (in hindsight)."""
        return max(c.value for c in self.curves.values())

    def ranked(self) -> list[Curve]:
        """Curves, best trial value first."""
        return sorted(self.curves.values(), key=lambda c: -c.value)


def read_records(source: str | Path | Iterable[Mapping[str, Any]]) -> list[dict]:
    """Run records from a JSON-lines export (``.gz`` = gzip), a ``RunLog``, or an iterable of records."""
    if isinstance(source, (str, Path)):
        p = Path(source).expanduser()
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rb") as fh:
            text = io.TextIOWrapper(fh, encoding="utf-8")
            return [json.loads(line) for line in text if line.strip()]
    if hasattr(source, "find") and hasattr(source, "get"):  # a RunLog
        return [source.get(r["id"], metrics=False) for r in source.find(status=["completed", "trained"])]
    return [dict(r) for r in source]


class MetaDataset:
    """Tasks → curves, built from run records that carry ``task`` and ``metadataset`` fields."""

    def __init__(self, tasks: Mapping[str, ReplayTask], space: SearchSpace | None = None, epochs: int = 0) -> None:
        self.tasks = dict(tasks)
        self.space = space or metadataset_space()
        self.epochs = epochs

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], space: SearchSpace | None = None,
                     exclude_tags: Iterable[str] = ()) -> "MetaDataset":
        """Group finished runs by task; each run's config is mapped onto ``space`` (others are skipped).

        A run's task is its ``task`` field (as sweeps, ``tune()`` and the meta-dataset store it:
        name, family, meta-features), else its dataset folder, whose meta-features are then
        computed (cached). Only runs that trained every planned epoch count: a stopped or
        pruned run's curve says nothing about how it would have ended.
        """
        space = space or metadataset_space()
        skip = set(exclude_tags)
        tasks: dict[str, ReplayTask] = {}
        epochs = 0
        for rec in records:
            if rec.get("status") not in ("completed", "trained") or skip & set(rec.get("tags") or []):
                continue
            params = space.params_of(rec.get("config") or {})
            eps = sorted(rec.get("epochs") or [], key=lambda e: e.get("epoch", 0))
            acc = [float(e.get("val_accuracy", math.nan)) for e in eps]
            planned = (rec.get("config") or {}).get("epochs")
            if params is None or not acc or (isinstance(planned, int) and len(acc) < planned):
                continue
            task = rec.get("task") or {}
            name = task.get("name") or _task_name(rec)
            if not name:
                continue
            t = tasks.get(name)
            if t is None:
                feats = task.get("features") or _features_of(rec)
                if not feats:
                    continue
                t = tasks[name] = ReplayTask(name, task.get("family"), dict(feats))
            dur = rec.get("durations") or {}
            t.curves[space.key_of(params)] = Curve(params, acc, [float(e.get("val_loss", math.nan)) for e in eps],
                                                   (rec.get("summary") or {}).get("test_accuracy"),
                                                   dur.get("train_s") or dur.get("total_s"), rec.get("id"))
            epochs = max(epochs, len(acc))
        return cls(tasks, space, epochs)

    @classmethod
    def load(cls, source: str | Path | Iterable[Mapping[str, Any]], space: SearchSpace | None = None,
             exclude_tags: Iterable[str] = ()) -> "MetaDataset":
        """From an export file, a run log or records."""
        return cls.from_records(read_records(source), space, exclude_tags)

    def merge(self, other: "MetaDataset") -> "MetaDataset":
        """Tasks of both (``other`` wins on a name clash)."""
        return MetaDataset({**self.tasks, **other.tasks}, self.space, max(self.epochs, other.epochs))

    def without(self, name: str) -> "MetaDataset":
        """Every task but ``name`` (leave-one-task-out)."""
        return MetaDataset({k: v for k, v in self.tasks.items() if k != name}, self.space, self.epochs)

    def __len__(self) -> int:
        return len(self.tasks)


def _task_name(rec: Mapping[str, Any]) -> str | None:
    from .recommend import task_key

    return task_key(rec)


def _features_of(rec: Mapping[str, Any]) -> dict | None:
    """Meta-features of the run's dataset folder, when it still exists (cached by folder)."""
    from pathlib import Path as _P

    from .features import task_features
    from .recommend import task_path

    p = task_path(rec)
    if not p or not _P(p).is_dir():
        return None
    try:
        return task_features(p)
    except (OSError, ValueError):
        return None


@dataclass
class ReplayResult:
    """What a replayed search did: one row per trial (own trials only, priors excluded)."""

    task: str
    trials: list[dict]  # {"number", "params", "epochs", "value", "pruned", "test", "cum_epochs"}
    oracle: float
    oracle_test: float | None

    def anytime(self) -> list[tuple[int, float]]:
        """(cumulative epochs, best finished value so far) after each trial."""
        out, best = [], -math.inf
        for t in self.trials:
            if not t["pruned"] and t["value"] is not None:
                best = max(best, t["value"])
            out.append((t["cum_epochs"], best))
        return out

    def epochs_to(self, target: float) -> float:
        """Epochs spent until a finished trial reached ``target`` (``inf`` when none did)."""
        for ep, best in self.anytime():
            if best >= target - 1e-9:
                return float(ep)
        return math.inf

    def best_at(self, epochs: float) -> tuple[float | None, float | None]:
        """(best value, its test accuracy) among trials finished within ``epochs`` of compute."""
        best, test = None, None
        for t in self.trials:
            if t["cum_epochs"] > epochs:
                break
            if not t["pruned"] and (best is None or t["value"] > best):
                best, test = t["value"], t["test"]
        return best, test

    @property
    def total_epochs(self) -> int:
        return self.trials[-1]["cum_epochs"] if self.trials else 0


def replay(task: ReplayTask, sampler: Any = None, pruner: Any = None, *, budget_epochs: int = 240,
           max_trials: int = 200, enqueue: Iterable[Mapping[str, Any]] = (), prior_trials: Iterable[Any] = (),
           space: SearchSpace | None = None, stop_at: float | None = None, stop_after: int = 0,
           on_study: Callable[[Any], None] | None = None) -> ReplayResult:
    """Run one Optuna study against ``task``'s stored curves (see the module docstring).

    Args:
        sampler, pruner: Optuna objects (defaults: TPE seed 0, no pruning).
        budget_epochs: stop once this much compute was spent (the trial in flight finishes).
        max_trials: hard cap on own trials (duplicates included).
        enqueue: grid points (labels) tried first, in order (``study.enqueue_trial``).
        prior_trials: ``FrozenTrial`` evidence added before the search (``study.add_trials``).
        stop_at: stop early once a finished trial reached this value and ``stop_after`` epochs were spent.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = space or metadataset_space()
    study = optuna.create_study(direction="maximize", sampler=sampler or optuna.samplers.TPESampler(seed=0),
                                pruner=pruner or optuna.pruners.NopPruner())
    priors = list(prior_trials)
    if priors:
        study.add_trials(priors)
    for p in enqueue:
        study.enqueue_trial(dict(p), skip_if_exists=False)
    if on_study is not None:
        on_study(study)
    rows: list[dict] = []
    seen: dict[str, tuple[float | None, bool, int]] = {}
    spent = 0
    best = -math.inf
    repeats = 0
    import random

    rng = random.Random(len(task.curves))
    while spent < budget_epochs and len(rows) < max_trials:
        trial = study.ask()
        params = space.suggest(trial)
        key = space.key_of(params)
        curve = task.curves.get(key)
        if curve is None:
            raise KeyError(f"replay {task.name}: no stored curve for {params}")
        if key in seen:  # answered from the study: no training
            value, pruned, _ = seen[key]
            used = 0
            if pruned:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                study.tell(trial, value)
        else:
            used, pruned = 0, False
            for e, v in enumerate(curve.val_accuracy):
                used += 1
                trial.report(v if math.isfinite(v) else 0.0, e)
                if e < curve.epochs - 1 and trial.should_prune():
                    pruned = True
                    break
            value = trial_value(curve.val_accuracy[:used])
            if pruned:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                study.tell(trial, value)
            seen[key] = (value, pruned, used)
        repeats = repeats + 1 if used == 0 else 0
        if repeats >= 2:
            untried = sorted(k for k in task.curves if k not in seen)
            if untried:
                study.enqueue_trial(dict(task.curves[rng.choice(untried)].params))
            repeats = 0
        spent += used
        rows.append({"number": len(rows), "params": params, "epochs": used, "value": value, "pruned": pruned,
                     "test": curve.test_accuracy, "cum_epochs": spent, "key": key})
        if not pruned:
            best = max(best, value)
        if stop_at is not None and best >= stop_at - 1e-9 and spent >= stop_after:
            break
    top = max(task.curves.values(), key=lambda c: c.value)
    return ReplayResult(task.name, rows, task.oracle, top.test_accuracy)
