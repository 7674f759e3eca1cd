"""workbench: scrape labelled images, train and test classifiers, record every run,
meta-learn few-shot learners and meta-analyse the stored runs — from Jupyter.

``import workbench`` is light (no torch): heavy names are imported on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from .runlog import Run, RunLog, RunLogError  # noqa: E402

# name -> module that defines it; resolved lazily so the CLI starts fast.
_LAZY = {
    "WorkbenchLogger": "workbench.runlog.lightning",
    "demo_dataset": "workbench.scrape",
    "SerpApiStub": "workbench.scrape",
    "TrainingCommand": "workbench.config",
    "ConfigError": "workbench.config",
    "start_training": "workbench.jobs",
    "start_test": "workbench.jobs",
    "train": "workbench.jobs",
    "predict": "workbench.learners.classifier",
    "sweep": "workbench.meta",
    "compare": "workbench.meta",
    "recommend": "workbench.meta",
    "load_glyphs": "workbench.data.glyphs",
    "FewShotCommand": "workbench.learners.fewshot",
    "adapt": "workbench.learners.fewshot",
}

__all__ = ["__version__", "RunLog", "Run", "RunLogError", *_LAZY]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)
