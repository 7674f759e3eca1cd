"""Where run records live: the store interface every backend implements.

:func:`.backends.open_store` picks the backend from the location ``RunLog`` was given:

======================================  ===============================================
``None``                                ``$WORKBENCH_DB``, else ``$WORKBENCH_HOME/runs.db``
``postgresql://…`` or ``postgres://…``  :class:`~.store_postgres.PostgresStore` (teams)
``tinydb:PATH``                         :class:`~.store_json.JsonStore`, the pre-SQLite JSON file
``PATH.json``                           the SQLite file ``PATH.db`` next to it; ``PATH.json``
                                        (a pre-SQLite run log) is migrated into it on first open
``PATH`` (anything else)                :class:`~.store_sqlite.SQLiteStore` (the default)
======================================  ===============================================

Every backend keeps the same guarantees (atomic record writes, no lost update between
processes, corrupt or foreign files refused and never overwritten) and is run through
the same tests (``tests/runlog``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from .errors import RunLogError, RunLogFileError

__all__ = ["RunLogError", "RunLogFileError", "Store", "MetricsWriter", "Filters", "runs_dir_for"]

#: ``(name, kind, statuses, tag)``: the filters every backend answers itself (indexed).
Filters = tuple[str | None, str | None, tuple[str, ...] | None, str | None]


class MetricsWriter(Protocol):
    """Where a live run's buffered metric lines go."""

    def append(self, lines: list[str]) -> None: ...
    def sync(self) -> None: ...
    def close(self) -> None: ...


class Store(ABC):
    """One backend of the run log. Records are plain dicts keyed by ``id``."""

    #: What ``RunLog(location)`` reopens (a path, or a URL without its password).
    location: str | Path
    #: Folder holding one sub-folder per run (checkpoints, artifacts, stop files).
    runs_dir: Path
    #: True when this process can only read (marking dead runs is skipped).
    read_only: bool = False

    @abstractmethod
    def insert(self, rec: dict[str, Any]) -> None:
        """Add a new record (its id must be new)."""

    @abstractmethod
    def get(self, run_id: str) -> dict[str, Any] | None:
        """The record with exactly this id, or None."""

    @abstractmethod
    def modify(self, run_id: str, fn: Callable[[dict[str, Any]], dict[str, Any]],
               metrics: list[str] | None = None) -> dict[str, Any]:
        """Atomically replace a record by ``fn(current)`` (no update of another process is lost).

        ``metrics``: metric lines stored with it (a run's last rows and its final status land together).
        Writing a record whose status is active counts as a heartbeat.
        """

    @abstractmethod
    def delete(self, run_id: str) -> None:
        """Remove a record and its metrics."""

    @abstractmethod
    def match_prefix(self, prefix: str, limit: int = 6) -> list[str]:
        """Ids starting with ``prefix`` (at most ``limit``)."""

    @abstractmethod
    def latest_named(self, name: str) -> str | None:
        """Id of the newest run called ``name``."""

    @abstractmethod
    def select(self, filters: Filters) -> list[dict[str, Any]]:
        """Records matching the filters, oldest first."""

    @abstractmethod
    def frame(self, filters: Filters):
        """``RunLog.to_frame``'s DataFrame (rows: :func:`~.records.frame_row`) of the matching runs, oldest first."""

    @abstractmethod
    def active(self) -> list[tuple[dict[str, Any], float | None]]:
        """(record, seconds since its last heartbeat or None) of every queued/running/testing run."""

    @abstractmethod
    def beat(self, run_id: str, at: float | None = None) -> None:
        """Record that the run's process is alive (``at``: a Unix time, for tests)."""

    @abstractmethod
    def metrics_writer(self, run_id: str) -> MetricsWriter:
        """A writer for a live run's per-step metric lines."""

    @abstractmethod
    def read_metrics(self, run_id: str) -> list[dict[str, Any]]:
        """Every stored metric row of a run, in logging order."""

    @abstractmethod
    def import_runs(self, items: Iterable[tuple[dict[str, Any], list[dict[str, Any]]]], *,
                    overwrite: bool = False, where: str = "") -> tuple[int, int, int]:
        """Add (record, metric rows) pairs in one transaction; returns (added, unchanged, replaced).

        A run already stored with different content raises :class:`RunLogError` (nothing is
        written) unless ``overwrite``. ``where`` names the source in messages.
        """

    def count(self) -> int:
        """Number of stored runs."""
        return len(self.select((None, None, None, None)))

    def close(self) -> None:
        """Release connections and file handles."""


def runs_dir_for(db_file: Path, default_name: str) -> Path:
    """``runs/`` next to the default file name, ``<stem>_runs/`` next to any other."""
    return db_file.parent / ("runs" if db_file.name == default_name else db_file.stem + "_runs")
