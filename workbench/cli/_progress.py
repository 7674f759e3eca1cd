"""The CLI's progress bar: Lightning's tqdm bar on stderr, saying epoch x/y, without ``v_num``.

Long commands (``train``, ``test``) keep stdout for their one result line: everything Lightning
draws goes to stderr (:func:`to_stderr`), and the training bar reads ``epoch 3/8 … 14/14`` (or
``meta-training … 120/2000`` for step-budgeted few-shot runs) with the latest losses and accuracies.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator


def progress_bar() -> Any:
    """A ``TQDMProgressBar`` for ``run_training(…, progress=True, callbacks=[progress_bar()])``."""
    from pytorch_lightning.callbacks import TQDMProgressBar

    class CliBar(TQDMProgressBar):
        def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
            items = super().get_metrics(trainer, pl_module)
            items.pop("v_num", None)  # the logger's version: noise to a reader
            return items

        def on_train_epoch_start(self, trainer: Any, *args: Any) -> None:
            super().on_train_epoch_start(trainer, *args)
            epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 1 else None
            self.train_progress_bar.set_description(
                f"epoch {trainer.current_epoch + 1}/{epochs}" if epochs else "meta-training")

    return CliBar(leave=False)


@contextlib.contextmanager
def to_stderr(enabled: bool = True) -> Iterator[None]:
    """Send what is printed to stdout (Lightning's bars) to stderr while the block runs."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield
