"""The run log's two error types (importable without touching any store)."""
from __future__ import annotations


class RunLogError(Exception):
    """A run-log problem a user can act on (bad file, unknown run, bad transition)."""


class RunLogFileError(RunLogError):
    """The run-log file is corrupt, truncated or not a workbench run log."""


class TransitionRefused(RunLogError):
    """A status change the transition table forbids (not a storage failure)."""
