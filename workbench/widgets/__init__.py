"""ipywidgets panels: thin shells around module functions (no logic lives here).

Imported lazily so ``import workbench.widgets`` stays cheap until a panel is used.
"""
from __future__ import annotations

import importlib
from typing import Any

_PANELS = {
    "ScrapePanel": "workbench.widgets.scrape",
    "TrainPanel": "workbench.widgets.train",
    "RunsPanel": "workbench.widgets.runs",
    "ComparePanel": "workbench.widgets.compare",
    "ImportancePanel": "workbench.widgets.compare",
    "RecommendPanel": "workbench.widgets.recommend",
    "TunePanel": "workbench.widgets.tune",
}

__all__ = list(_PANELS)


def __getattr__(name: str) -> Any:
    mod = _PANELS.get(name)
    if mod is None:
        raise AttributeError(f"module 'workbench.widgets' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)
