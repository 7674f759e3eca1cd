"""Meta-analysis of the run log: compare runs, what mattered, recommend a command, runs gone bad.

- :func:`compare` — results table, overlaid curves, config keys that differ;
- :func:`param_importance` — which hyperparameters mattered (with a too-few-runs warning);
- :func:`task_features` / :func:`recommend` — warm-start a new dataset from the nearest past tasks;
- :class:`GoneBadCallback` / :func:`train_watched` — the learned pruner's model watching one run:
  call it diverged, flat or worse than the best run on its dataset early, and stop it;
- :func:`sweep` — variants of a training command into the run log, resumable and stoppable;
- :func:`tune` — an Optuna study over training commands, warm-started from the nearest past tasks
  and pruned by a model of stored learning curves (:mod:`~workbench.meta.tune`,
  :mod:`~workbench.meta.warmstart`, :mod:`~workbench.meta.pruning`, :mod:`~workbench.meta.replay`).

Light names are imported here (so ``workbench.meta.compare`` is the function, not the module
of the same name); Lightning-backed ones (gone-bad) load on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

from .compare import Comparison, compare, config_diff, curves_frame, plot_curves, runs_table
from .features import task_features
from .importance import Importance, TooFewRunsWarning, param_importance, plot_importance
from .recommend import Recommendation, TaskIndex, nearest_tasks, recommend
from .sweep import Sweep, expand_space, sweep
from .replay import MetaDataset
from .space import SearchSpace, default_space
from .tune import Budget, TuneResult, anytime_curve, pruned_trials, trials_frame, tune
from .warmstart import warm_start_configs

_LAZY = {
    "GoneBadCallback": "gonebad", "Verdict": "gonebad", "train_watched": "gonebad",
    "LearnedPruner": "pruning", "CurveModel": "pruning",
}

__all__ = ["compare", "Comparison", "runs_table", "config_diff", "plot_curves", "curves_frame",
           "param_importance", "Importance", "plot_importance", "TooFewRunsWarning", "task_features",
           "recommend", "Recommendation", "TaskIndex", "nearest_tasks", "sweep", "Sweep", "expand_space",
           "tune", "TuneResult", "Budget", "anytime_curve", "trials_frame", "pruned_trials", "SearchSpace",
           "default_space", "warm_start_configs", "MetaDataset", *_LAZY]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'workbench.meta' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)
