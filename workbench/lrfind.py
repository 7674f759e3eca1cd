"""``"optimizer": {"params": {"lr": "find"}}``: Lightning's learning-rate finder picks the rate.

Before training, :func:`find_lr` builds the model as training will (same seed, same
``init_from``), runs ``Tuner.lr_find`` — ``lr_find.num_training`` optimizer steps with the rate
rising from ``min_lr`` to ``max_lr`` — on its own throw-away Trainer (no run-log rows, no
checkpoints, no validation), and takes Lightning's suggestion (the steepest fall of the loss).
The run then builds its model afresh from the seed and trains with that rate; the record keeps
the curve and the suggestion (``lr_find``), and a resumed run reuses the suggestion.
"""
from __future__ import annotations

import functools
import logging
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable, Iterator

from . import runtime
from .commands import Command
from .commands.runner_options import finds_lr, with_lr
from .learners.recipe import Prepared, Recipe

__all__ = ["find_lr", "with_found_lr"]


_QUIET_LOCK = threading.Lock()
_quiet_users = 0


@contextmanager
def _quiet_finder() -> Iterator[None]:
    """No progress bar from the finder: a job's thread must not print into a notebook cell.

    Lightning's finder draws a tqdm bar it offers no switch for; its module's ``tqdm`` is
    swapped for a disabled one while any of our finders runs (counted, so jobs may overlap).
    """
    global _quiet_users
    from pytorch_lightning.tuner import lr_finder

    logging.getLogger("pytorch_lightning.trainer.connectors.checkpoint_connector").setLevel(logging.WARNING)
    with _QUIET_LOCK:
        if _quiet_users == 0:
            _quiet_finder.original = lr_finder.tqdm  # type: ignore[attr-defined]
            lr_finder.tqdm = functools.partial(lr_finder.tqdm, disable=True)
        _quiet_users += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet_users -= 1
            if _quiet_users == 0:
                lr_finder.tqdm = _quiet_finder.original  # type: ignore[attr-defined]


def with_found_lr(prepared: Prepared, lr: float) -> Prepared:
    """``prepared`` whose command trains with learning rate ``lr`` instead of ``"find"``."""
    cmd: Command = prepared.command.model_copy(deep=True)
    cmd.optimizer = with_lr(cmd.optimizer, lr)
    return replace(prepared, command=cmd)


def find_lr(recipe: Recipe, prepared: Prepared, init: Callable[[Any], Any] | None = None,
            root: str | None = None) -> dict[str, Any]:
    """Run Lightning's lr finder for ``prepared`` (whose optimizer asks for ``"find"``).

    ``init``: applied to the freshly built model (``init_from``); ``root``: where Lightning
    keeps its temporary checkpoint (a temporary folder by default). Returns the record's
    ``lr_find``: ``suggestion``, the tried ``lr`` and ``loss`` lists and the options.
    """
    import pytorch_lightning as pl
    from pytorch_lightning.tuner import Tuner

    cmd = prepared.command
    if not finds_lr(cmd.optimizer):
        raise ValueError("find_lr: the command's optimizer.params.lr is not 'find'")
    opts = cmd.lr_find
    probe = with_found_lr(prepared, opts.min_lr)  # any number: the finder sets every step's rate
    with runtime.seeded(cmd.seed):
        module = recipe.build(probe)
    if init is not None:
        init(module)
    with tempfile.TemporaryDirectory(dir=root) as tmp, _quiet_finder():
        trainer = pl.Trainer(**{**cmd.trainer.trainer_kwargs(), "logger": False, "enable_checkpointing": False,
                                "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0,
                                "default_root_dir": tmp, "max_epochs": -1, "limit_val_batches": 0})
        # only the training loader: the finder needs no validation
        finder = Tuner(trainer).lr_find(module, train_dataloaders=prepared.datamodule.train_dataloader(),
                                        min_lr=opts.min_lr, max_lr=opts.max_lr, num_training=opts.num_training,
                                        mode=opts.mode, early_stop_threshold=opts.early_stop_threshold,
                                        update_attr=False)
    lrs = [float(x) for x in finder.results.get("lr", [])]
    losses = [float(x) for x in finder.results.get("loss", [])]
    suggestion = finder.suggestion()
    if suggestion is None:
        raise ValueError(f"optimizer.params.lr: the lr finder could not suggest a rate from {len(losses)} steps"
                         " (raise lr_find.num_training, or give the rate as a number)")
    return {"suggestion": float(suggestion), "lr": lrs, "loss": losses, **opts.to_dict()}
