"""The run log: every scrape, training, testing and meta-learning run, in one TinyDB file.

Public names: :class:`RunLog`, :class:`Run`, :class:`WorkbenchLogger` (imported lazily:
it pulls in Lightning), the status constants and the errors.
"""
from __future__ import annotations

from typing import Any

from .log import ACTIVE, STATUSES, TERMINAL, TRANSITIONS, Run, RunLog, environment, new_run_id
from .store import RunLogError, RunLogFileError

__all__ = ["RunLog", "Run", "WorkbenchLogger", "RunLogError", "RunLogFileError", "STATUSES", "ACTIVE",
           "TERMINAL", "TRANSITIONS", "environment", "new_run_id"]


def __getattr__(name: str) -> Any:
    if name == "WorkbenchLogger":
        from .lightning import WorkbenchLogger

        return WorkbenchLogger
    raise AttributeError(name)
