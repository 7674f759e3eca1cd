"""workbench: scrape labelled images, train and test classifiers, record every run,
meta-learn few-shot learners and meta-analyse the stored runs — from Jupyter.

``import workbench`` is light (no torch): heavy names are imported on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .runlog import Run, RunLog, RunLogError  # noqa: E402

# name -> module that defines it; resolved lazily so the CLI starts fast.
_LAZY = {
    "WorkbenchLogger": "workbench.runlog.lightning",
    "demo_dataset": "workbench.scrape",
    "SerpApiStub": "workbench.scrape",
    "parse": "workbench.commands",
    "TrainingCommand": "workbench.commands",
    "FewShotCommand": "workbench.commands",
    "ConfigError": "workbench.registry",
    "run_training": "workbench.training",
    "run_test": "workbench.training",
    "start_training": "workbench.jobs",
    "start_test": "workbench.jobs",
    "resume": "workbench.jobs",
    "resume_training": "workbench.training",
    "export_runs": "workbench.exporters",
    "train": "workbench.jobs",
    "predict": "workbench.learners.classifier",
    "sweep": "workbench.meta",
    "compare": "workbench.meta",
    "recommend": "workbench.meta",
    "load_glyphs": "workbench.data.glyphs",
    "adapt": "workbench.learners.adapt",
}

__all__ = ["__version__", "RunLog", "Run", "RunLogError", *_LAZY]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)
