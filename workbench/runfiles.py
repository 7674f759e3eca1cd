"""What a run keeps in its folder by name, and the stop request a job can see (light: no torch).

- ``STOP`` — a stop request from another process (:class:`StopFlag`);
- ``checkpoints/last.ckpt`` — the checkpoint a run resumes from (written by
  :mod:`workbench.checkpoints` via ``last.ckpt.pending``); ``checkpoints/interrupted.ckpt`` —
  what an interrupt leaves when there is no clean checkpoint yet (testable, not resumable).
"""
from __future__ import annotations

import threading
from pathlib import Path

STOP_FILE = "STOP"
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
PENDING = "last.ckpt.pending"
INTERRUPTED = "interrupted.ckpt"

__all__ = ["StopFlag", "STOP_FILE", "CHECKPOINTS", "LAST", "PENDING", "INTERRUPTED"]


class StopFlag:
    """A stop request a job can see: an in-process event, or a ``STOP`` file in the run folder."""

    def __init__(self, run_dir: Path | None = None, event: threading.Event | None = None) -> None:
        self.event = event or threading.Event()
        self.file = Path(run_dir) / STOP_FILE if run_dir is not None else None

    def set(self) -> None:
        self.event.set()
        if self.file is not None:
            try:
                self.file.touch()
            except OSError:
                pass

    def is_set(self) -> bool:
        return self.event.is_set() or (self.file is not None and self.file.exists())
