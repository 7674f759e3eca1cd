"""Reading an Optuna study of training runs: its storage, own trials, anytime curve, pruned runs.

Compute separate from render: each function returns a DataFrame a notebook or panel can plot
(best-so-far against epochs, a parallel-coordinates plot of the trials, the pruned runs with
their stop points). Trials tagged ``prior`` (warm-start evidence from other tasks) are left out.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import paths
from .replay import SHIPPED_METADATASET, MetaDataset

if TYPE_CHECKING:
    from ..runlog import RunLog
    from .space import SearchSpace

__all__ = ["progress_line", "study_storage", "rdb_url", "own_trials", "check_trial_budget", "memory_of", "trials_frame", "anytime_curve", "pruned_trials"]


def rdb_url(url: str) -> str:
    """An RDB URL for SQLAlchemy: ``postgresql://`` goes through psycopg 3 (the run log's driver).

    SQLAlchemy reads a bare ``postgresql://`` (or ``postgres://``) as psycopg2, which the workbench
    does not install; a URL naming its driver (``postgresql+…://``) is kept as given.
    """
    import importlib.util

    m = re.match(r"(postgresql|postgres)://", url)
    if m and importlib.util.find_spec("psycopg2") is None:
        return "postgresql+psycopg://" + url[m.end():]
    return url


def study_storage(storage: str | None, name: str):
    """An Optuna storage: an RDB URL (see :func:`rdb_url`), else a journal file (a path, or the default one)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if storage and "://" in storage:
        return optuna.storages.RDBStorage(rdb_url(storage))
    path = Path(storage).expanduser() if storage else paths.home() / "studies" / f"{name}.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def own_trials(study: Any, states: Any = None) -> list:
    """The study's own trials (warm-start priors and trials refused as over the budget left out)."""
    return [t for t in study.get_trials(deepcopy=False, states=states)
            if not t.user_attrs.get("prior") and not t.user_attrs.get("over_budget")]


def check_trial_budget(trial: Any, kind: str, amount: float) -> None:
    """Refuse a trial numbered past a trial budget (another worker asked first): nothing is trained.

    Optuna's stop callbacks run after a trial, so a worker that had not asked yet when another
    finished would overshoot; trial numbers come from the storage, so counting the trials numbered
    before this one is exact. The refused trial is tagged ``over_budget`` (left out of
    :func:`own_trials`).
    """
    import optuna

    if kind != "trials":
        return
    counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING)
    before = sum(t.state in counted and "repeat_of" not in t.user_attrs
                 for t in own_trials(trial.study) if t.number < trial.number)
    if before >= amount:  # the worker's budget callback then stops it (this trial does not count)
        trial.set_user_attr("over_budget", True)
        raise optuna.TrialPruned("the trial budget was spent by the study's other workers")


def trials_frame(study: Any):
    """One row per own trial (priors left out): number, state, params, value, epochs, run id, test accuracy.

    The data of a parallel-coordinates plot of the study.
    """
    import pandas as pd

    rows = []
    for t in own_trials(study):
        rows.append({"trial": t.number, "state": t.state.name, **t.params, "value": t.value,
                     "epochs": t.user_attrs.get("epochs", len(t.intermediate_values)),
                     "run_id": t.user_attrs.get("run_id"), "test_accuracy": t.user_attrs.get("test_accuracy"),
                     "pruned_at": t.user_attrs.get("pruned_epoch")})
    return pd.DataFrame(rows)


def anytime_curve(study: Any):
    """Best finished value so far after each own trial, against cumulative epochs trained."""
    import pandas as pd

    import optuna

    rows, best, spent = [], -math.inf, 0
    for t in sorted(own_trials(study), key=lambda t: t.number):
        if t.state not in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
            continue
        spent += int(t.user_attrs.get("epochs", len(t.intermediate_values)))
        if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None:
            best = max(best, t.value)
        rows.append({"trial": t.number, "epochs": spent, "best": best if best > -math.inf else None,
                     "state": t.state.name})
    return pd.DataFrame(rows)


def pruned_trials(study: Any):
    """Pruned trials with their partial curves and the epoch they were stopped at."""
    import pandas as pd

    import optuna

    rows = [{"trial": t.number, "run_id": t.user_attrs.get("run_id"), "stopped_at": max(t.intermediate_values),
             "curve": [t.intermediate_values[k] for k in sorted(t.intermediate_values)], **t.params}
            for t in own_trials(study, (optuna.trial.TrialState.PRUNED,)) if t.intermediate_values]
    return pd.DataFrame(rows)


# -- the memory a study uses --------------------------------------------------------------------

def _where(log: RunLog) -> str:
    """The run log's location for a note, without any password a database URL carries."""
    return re.sub(r"://[^@/]*@", "://", str(log.path))


def _describe(md: MetaDataset) -> str:
    return f"{len(md)} past task(s), {sum(len(t.curves) for t in md.tasks.values())} run(s)"


def memory_of(history: Any, space: SearchSpace, log: RunLog, name: str) -> tuple[MetaDataset, str]:
    """The memory of a study named ``name`` and a note saying what it is (which sources, how many past tasks and runs)."""
    if history is None:
        return MetaDataset({}, space), "memory: none (history=None)"
    if isinstance(history, MetaDataset):
        return history, f"memory: the given MetaDataset, {_describe(history)}"
    if isinstance(history, str) and history == "auto":
        own = MetaDataset.load(log, space, exclude_tags=[f"study:{name}"])
        parts = [f"run log {_where(log)}: {_describe(own)}"]
        hist = own
        if SHIPPED_METADATASET.is_file():
            shipped = MetaDataset.load(SHIPPED_METADATASET, space)
            hist = shipped.merge(own)
            parts.insert(0, f"shipped meta-dataset {SHIPPED_METADATASET}: {_describe(shipped)} on this space")
        else:  # said, never silent: an install without the package data
            parts.insert(0, f"shipped meta-dataset missing at {SHIPPED_METADATASET}")
        return hist, f"memory: {_describe(hist)} ({'; '.join(parts)})"
    hist = MetaDataset.load(history, space, exclude_tags=[f"study:{name}"])
    return hist, f"memory: {history}: {_describe(hist)} on this space"


def progress_line(name: str, kind: str, amount: float, spent: Any) -> Any:
    """An Optuna callback printing ``[study] trial N: state value · best · spent/budget`` to stderr.

    ``kind``: the budget's unit (``trials``/``epochs``/``seconds``); ``spent(study)``: how much is used.
    """
    import sys

    import optuna

    unit = {"trials": "trials", "epochs": "epochs", "seconds": "s"}[kind]

    def report(study: Any, trial: Any) -> None:
        if trial.user_attrs.get("over_budget"):
            return
        done = [t.value for t in own_trials(study, (optuna.trial.TrialState.COMPLETE,)) if t.value is not None]
        how = trial.state.name.lower() + (f" at epoch {trial.user_attrs['pruned_epoch']}"
                                          if "pruned_epoch" in trial.user_attrs else "")
        value = f" {trial.value:.4f}" if trial.value is not None else ""
        best = f" · best {max(done):.4f}" if done else ""
        print(f"[{name}] trial {trial.number}: {how}{value}{best} · {spent(study):.0f}/{amount:g} {unit}",
              file=sys.stderr, flush=True)

    return report
