"""Checkpoints a run resumes from, and a logger that does not log a step twice.

**When.** :class:`ResumableCheckpoint` writes ``checkpoints/last.ckpt`` every
``checkpoint_every_s`` seconds of training (at the end of a batch no validation follows), at
the end of every epoch (after its validation) and where a stop request ends training. Each
write goes to ``last.ckpt.pending`` first and replaces ``last.ckpt`` only once the metric rows
up to that point are flushed and fsynced — so the checkpoint a killed run leaves never lies
ahead of its metrics (no missing steps after a resume), and ``last.ckpt`` is never half written.

**Where in the epoch.** The checkpoint keeps the training loader's ``state_dict``
(:class:`~workbench.data.resumable.ResumableDataLoader`): before each write the loader is told
how many batches Lightning has trained on, which is what it skips on resume. Lightning hands
that state back itself only for checkpoints from the middle of an epoch (for one written at an
epoch's end it starts the next epoch with a fresh loader: the first epoch's order again), so
the callback keeps its own copy and gives it to the loader before the first batch.

**No step twice.** Steps between the checkpoint and the kill were logged before and are run
again after a resume; :class:`SkipLogged` drops a metric whose step is not past the last step
stored for it, so every metric's steps stay strictly increasing and none is missing.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping

import pytorch_lightning as pl

from .runfiles import INTERRUPTED, LAST, PENDING
from .runlog import Run
from .runlog.lightning import WorkbenchLogger

#: Where a checkpoint keeps the training loader's place (read back by :class:`ResumableCheckpoint`).
LOADER_KEY = "workbench_train_loader"

__all__ = ["ResumableCheckpoint", "SkipLogged", "last_logged_steps", "LAST", "PENDING", "INTERRUPTED", "LOADER_KEY"]


class ResumableCheckpoint(pl.Callback):
    """Writes ``<ckpt_dir>/last.ckpt`` while training (see the module docstring).

    ``stopper``: the run's stop callback (its ``reason`` is set at the batch a stop ends on);
    ``run``: the run whose metrics must be durable before a checkpoint counts (rank zero).
    """

    def __init__(self, ckpt_dir: Path | None, every_s: float | None, stopper: Any = None, run: Run | None = None) -> None:
        self.dir = Path(ckpt_dir) if ckpt_dir is not None else None
        self.every_s = every_s
        self.stopper = stopper
        self.run = run
        self.t_last = time.monotonic()
        self.saved_at_step: int | None = None
        self.loader_state: dict[str, Any] | None = None

    # -- deciding ----------------------------------------------------------------------
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        stopping = self.stopper is not None and self.stopper.reason == "stopped"
        due = self.every_s is not None and time.monotonic() - self.t_last >= self.every_s
        if trainer.world_size > 1:  # every rank takes part in a save: decide together
            due = bool(trainer.strategy.reduce_boolean_decision(due, all=False))
        if stopping or (due and not _validates_after(trainer)):
            self.save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if not trainer.should_stop or (self.stopper is not None and self.stopper.reason != "stopped"):
            self.save(trainer)  # (a stop already saved at its batch)

    # -- the training loader's place (Lightning restores it only for mid-epoch checkpoints) --
    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        loader = trainer.train_dataloader
        if hasattr(loader, "state_dict") and hasattr(loader, "set_position"):
            checkpoint[LOADER_KEY] = loader.state_dict()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        self.loader_state = checkpoint.get(LOADER_KEY)

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.t_last = time.monotonic()
        loader = trainer.train_dataloader
        if self.loader_state is not None and hasattr(loader, "load_state_dict"):
            loader.load_state_dict(self.loader_state)  # before the first batch is drawn
        self.loader_state = None

    # -- committing ----------------------------------------------------------------------
    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self.commit()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.commit()

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.commit()

    def on_exception(self, trainer: pl.Trainer, pl_module: Any, exception: BaseException) -> None:
        self.commit()

    def path(self, name: str) -> Path:
        """A file in the checkpoint folder (the working folder on DDP ranks > 0, which write nothing)."""
        return (self.dir or Path(".")) / name

    def save(self, trainer: pl.Trainer) -> None:
        """Write a pending checkpoint at this point of training (every rank calls this; rank zero writes)."""
        loader = trainer.train_dataloader
        if hasattr(loader, "set_position"):  # what Lightning trained on, not what was fetched
            loader.set_position(int(trainer.fit_loop.epoch_loop.batch_progress.current.processed))
        trainer.save_checkpoint(str(self.path(PENDING)), weights_only=False)
        self.t_last = time.monotonic()
        self.saved_at_step = int(trainer.global_step)

    def commit(self) -> bool:
        """Make the pending checkpoint ``last.ckpt`` once the metrics logged so far are durable."""
        if self.dir is None or not (self.dir / PENDING).is_file():
            return False
        if self.run is not None:
            self.run.flush(fsync=True)
        os.replace(self.dir / PENDING, self.dir / LAST)
        return True


def _validates_after(trainer: pl.Trainer) -> bool:
    """True when validation runs after the current batch (a checkpoint there would skip it on resume)."""
    if not trainer.enable_validation or trainer.limit_val_batches == 0:
        return False
    progress = trainer.fit_loop.epoch_loop.batch_progress
    if progress.is_last_batch:
        return True
    every = trainer.val_check_batch
    return isinstance(every, int) and every > 0 and progress.current.processed % every == 0


def last_logged_steps(rows: list[Mapping[str, Any]]) -> dict[str, int]:
    """The last step stored for each metric key of a run's rows."""
    out: dict[str, int] = {}
    for r in rows:
        step = int(r.get("step", -1))
        for k in r:
            if k not in ("step", "time", "epoch") and step > out.get(k, -1):
                out[k] = step
    return out


class SkipLogged(WorkbenchLogger):
    """``WorkbenchLogger`` for a resumed run: metrics at steps already stored are not logged again."""

    def __init__(self, *args: Any, logged: Mapping[str, int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logged = dict(logged or {})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if step is not None and self.logged:
            metrics = {k: v for k, v in metrics.items() if k == "epoch" or step > self.logged.get(k, -1)}
            if set(metrics) <= {"epoch"}:
                return
        super().log_metrics(metrics, step)
