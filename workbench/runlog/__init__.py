"""The run log: every scrape, training, testing and meta-learning run, in one store.

Public names: :class:`RunLog`, :class:`Run`, :class:`WorkbenchLogger` (imported lazily:
it pulls in Lightning), :class:`RunRecord` (a typed view of a record), the status
constants and the errors. Stores: SQLite (default), PostgreSQL (teams), TinyDB (old logs).
"""
from __future__ import annotations

from typing import Any

from .env import environment, new_run_id
from .errors import RunLogError, RunLogFileError
from .log import Run, RunLog
from .records import ACTIVE, STATUSES, TERMINAL, TRANSITIONS, RunRecord

__all__ = ["RunLog", "Run", "WorkbenchLogger", "RunRecord", "RunLogError", "RunLogFileError", "STATUSES",
           "ACTIVE", "TERMINAL", "TRANSITIONS", "environment", "new_run_id"]


def __getattr__(name: str) -> Any:
    if name == "WorkbenchLogger":
        from .lightning import WorkbenchLogger

        return WorkbenchLogger
    raise AttributeError(name)
