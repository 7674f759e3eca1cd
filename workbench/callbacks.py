"""The Lightning callbacks every training run has, whatever its kind: stop requests and the
time limit, and the record fields written once training starts.

A stop request is a :class:`~workbench.runfiles.StopFlag`: an in-process event (a panel's Stop
button, a sweep) or a ``STOP`` file in the run folder (another process: ``jobs`` of a subprocess run).
"""
from __future__ import annotations

import json
import time
from typing import Any, Mapping

import pytorch_lightning as pl

from .learners.recipe import Prepared
from .runfiles import StopFlag
from .runlog import Run

__all__ = ["StopOnRequest", "RecordData", "n_parameters"]


class StopOnRequest(pl.Callback):
    """Graceful stop at a step boundary (all DDP ranks together): requested, or time is up.

    ``reason`` says why training ended early: ``"stopped"`` or ``"time_limit"`` (else None).
    """

    def __init__(self, flag: StopFlag, time_limit_s: float | None = None) -> None:
        self.flag = flag
        self.time_limit = time_limit_s
        self.t0 = time.monotonic()
        self.reason: str | None = None

    def check(self, trainer: pl.Trainer) -> None:
        req = self.flag.is_set()
        if trainer.world_size > 1:
            req = bool(trainer.strategy.reduce_boolean_decision(req, all=False))
        if req:
            self.reason = "stopped"
        elif self.time_limit is not None and time.monotonic() - self.t0 > self.time_limit:
            self.reason = "time_limit"
        if self.reason:
            trainer.should_stop = True

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.check(trainer)

    def on_validation_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if not trainer.sanity_checking:  # a long validation should not delay a stop to the next epoch
            self.check(trainer)


class RecordData(pl.Callback):
    """Writes the data files (split) and the model size into the run once training starts,
    with ``fields`` (``lineage``, ``lr_find``, ``loggers``: what the runner did before fitting)."""

    def __init__(self, prepared: Prepared, run: Run | None, n_threads: int, fields: Mapping[str, Any]) -> None:
        self.prepared, self.run, self.n_threads, self.fields = prepared, run, n_threads, fields

    def on_fit_start(self, trainer: pl.Trainer, module: Any) -> None:
        if self.run is None:
            return
        self.run.dir.mkdir(parents=True, exist_ok=True)
        for fname, content in self.prepared.files.items():
            (self.run.dir / fname).write_text(json.dumps(content), encoding="utf-8")
        self.run.update(dataset=self.prepared.dataset, n_parameters=n_parameters(module),
                        runtime={"threads": self.n_threads}, **self.fields)


def n_parameters(module: Any) -> int:
    """Trainable parameters of a module."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
