"""Where the workbench keeps its files: the one place that reads ``WORKBENCH_HOME`` and ``WORKBENCH_DB``.

Everything lives under one folder, ``WORKBENCH_HOME`` (default ``~/.workbench``):

- ``runs.db``              the run log (SQLite), one record per run, per-step metrics included
- ``runs/<run id>/``       per-run folder: checkpoints, artifacts, job logs
- ``datasets/``            scraped and generated datasets
- ``cache/``               decoded-image and benchmark caches

``WORKBENCH_DB`` points the run log elsewhere: another SQLite file, or a PostgreSQL server
(``postgresql://user@host/db``) that several machines share. The run log is the only state
shared between notebooks and processes, so every path comes from here.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

#: File name of the default run log inside ``WORKBENCH_HOME``.
RUNLOG_FILE = "runs.db"


def home() -> Path:
    """Return the workbench home folder (``$WORKBENCH_HOME`` or ``~/.workbench``), creating it."""
    root = Path(os.environ.get("WORKBENCH_HOME") or Path.home() / ".workbench").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def runlog_path() -> Path:
    """Default run-log file: ``$WORKBENCH_HOME/runs.db``."""
    return home() / RUNLOG_FILE


def runlog_location() -> str | Path:
    """Where ``RunLog()`` opens: ``$WORKBENCH_DB`` (a path or a ``postgresql://`` URL), else :func:`runlog_path`."""
    db = os.environ.get("WORKBENCH_DB", "").strip()
    return db if db else runlog_path()


def runs_dir() -> Path:
    """Per-run folders of a run log that is not a file (a PostgreSQL server): ``$WORKBENCH_HOME/runs``."""
    return home() / "runs"


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


@contextmanager
def replacing(path: str | os.PathLike, suffix: str = ".tmp", directory: bool = False) -> Iterator[Path]:
    """Write ``path`` (a file, or a folder with ``directory``) atomically and safely.

    Yields a *new* temporary file or folder next to ``path`` (``mkstemp`` / ``mkdtemp``: never an
    existing file or a link someone planted under a predictable name in a shared cache), renamed
    over ``path`` when the body succeeds and removed when it fails. ``suffix``: what the name must
    end with (``.npz`` for ``numpy.savez``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if directory and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if directory else tmp.unlink(missing_ok=True)
        raise
