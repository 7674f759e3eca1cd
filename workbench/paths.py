"""Where the workbench keeps its files.

Everything lives under one folder, ``WORKBENCH_HOME`` (default ``~/.workbench``):

- ``runs.json``            the run log (TinyDB), one record per run
- ``runs/<run id>/``       per-run folder: ``metrics.jsonl``, checkpoints, artifacts
- ``datasets/``            scraped and generated datasets
- ``cache/``               decoded-image and benchmark caches

The run log is the only state shared between notebooks, so every path comes from here.
"""
from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """Return the workbench home folder (``$WORKBENCH_HOME`` or ``~/.workbench``), creating it."""
    root = Path(os.environ.get("WORKBENCH_HOME") or Path.home() / ".workbench").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def runlog_path() -> Path:
    """Default run-log file: ``$WORKBENCH_HOME/runs.json``."""
    return home() / "runs.json"


def datasets_dir() -> Path:
    """Default folder for datasets built by the workbench."""
    p = home() / "datasets"
    p.mkdir(parents=True, exist_ok=True)
    return p


def cache_dir() -> Path:
    """Default folder for caches that can be rebuilt at any time."""
    p = home() / "cache"
    p.mkdir(parents=True, exist_ok=True)
    return p


def quick_mode() -> bool:
    """True when ``WORKBENCH_QUICK`` is set to a truthy value (tests, the tour's ``--quick``)."""
    return os.environ.get("WORKBENCH_QUICK", "").strip().lower() not in ("", "0", "false", "no")
