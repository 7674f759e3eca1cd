"""The choice of run-log backend from a location (see :mod:`.store` for the table).

Kept apart from :mod:`.store` so the backends can import the interface without a cycle.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from .. import paths
from .errors import RunLogError
from .store import Store


def _is_url(s: str, *schemes: str) -> bool:
    return any(s.lower().startswith(sc + ":") for sc in schemes)


def _regular_or_absent(path: Path) -> Path:
    """Refuse a run-log location that exists but is not a file (``/dev/null``, a FIFO, a folder):
    SQLite would fail with "disk I/O error" after writing ``<path>-journal`` beside it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise RunLogError(f"run log {path}: cannot open it ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise RunLogError(f"run log {path}: {what}; a run log is a file such as …/runs.db (nothing was written)")
    return path


def open_store(location: str | os.PathLike | None = None, *, fsync: bool = True) -> Store:
    """The backend for ``location`` (see the module docstring)."""
    if location is None:
        location = paths.runlog_location()
    loc = os.fspath(location)
    if _is_url(loc, "postgresql", "postgres"):
        from .store_postgres import PostgresStore

        return PostgresStore(loc, fsync=fsync)
    if _is_url(loc, "tinydb"):
        from .store_json import JsonStore

        return JsonStore(_regular_or_absent(Path(loc.split(":", 1)[1]).expanduser()), fsync=fsync)
    if _is_url(loc, "sqlite"):
        loc = loc.split(":", 1)[1]
        loc = loc[2:] if loc.startswith("///") else loc  # sqlite:///abs/path → /abs/path
    if "://" in loc:
        raise RunLogError(f"unknown run-log location {loc!r}: use a file path, tinydb:PATH or"
                          " postgresql://user@host/db")
    path = Path(loc).expanduser()
    _regular_or_absent(path)
    from .store_sqlite import SQLiteStore

    legacy = None
    if path.suffix == ".json":
        legacy, path = path, path.with_suffix(".db")
    elif path.suffix == ".db":
        legacy = path.with_suffix(".json")
    return SQLiteStore(path, fsync=fsync, legacy=legacy)
