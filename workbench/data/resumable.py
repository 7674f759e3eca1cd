"""A DataLoader that a run resumed mid-epoch continues exactly where it stopped.

Lightning saves a training DataLoader's ``state_dict()`` in every checkpoint and hands it back
through ``load_state_dict()`` on ``trainer.fit(ckpt_path=…)`` (a loader without them restarts
its epoch from the first batch: seen batches twice, the rest never). The state here is small:
the loader's generators (its own, its sampler's) as they were when the epoch's iterator was
made, and how many batches it has handed out since. On resume the generators are put back and
that many batches are drawn and dropped, so the epoch's order, its augmentation seeds and the
batches still to come are those of the interrupted run. Lightning fetches no batch ahead from a
loader whose length it knows; the checkpoint callback also tells the loader how many batches
Lightning trained on before each save (:mod:`workbench.checkpoints`).
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader

__all__ = ["ResumableDataLoader"]


class ResumableDataLoader(DataLoader):
    """``torch.utils.data.DataLoader`` plus ``state_dict`` / ``load_state_dict`` (same arguments)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epoch_start: list[torch.Tensor] | None = None
        self._yielded = 0
        self._resume: dict[str, Any] | None = None

    def _generators(self) -> list[torch.Generator]:
        gens = [self.generator, getattr(self.sampler, "generator", None)]
        out: list[torch.Generator] = []
        for g in gens:
            if isinstance(g, torch.Generator) and all(g is not h for h in out):
                out.append(g)
        return out

    def __iter__(self) -> Iterator[Any]:
        # Lazy: the state to continue from may arrive after the iterator is made and before the
        # first batch (a checkpoint from the end of an epoch reaches the loader at on_train_start).
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        gens = self._generators()
        skip = 0
        if self._resume is not None:
            state, self._resume = self._resume, None
            done = state["batches"] >= len(self)  # the epoch had ended: the next one starts fresh
            for g, s in zip(gens, state["now"] if done else state["epoch_start"]):
                g.set_state(s)
            skip = 0 if done else int(state["batches"])
        self._epoch_start = [g.get_state() for g in gens]
        it = super().__iter__()
        for _ in range(skip):  # already trained on: draw (keeps every generator in step) and drop
            next(it)
        self._yielded = skip
        for batch in it:
            self._yielded += 1
            yield batch

    def set_position(self, batches: int) -> None:
        """Batches of this epoch trained on so far (what the next ``state_dict`` records)."""
        self._yielded = int(batches)

    def state_dict(self) -> dict[str, Any]:
        """Where this loader is in its epoch (Lightning stores it in the checkpoint)."""
        gens = self._generators()
        return {"batches": self._yielded, "epoch_start": self._epoch_start or [g.get_state() for g in gens],
                "now": [g.get_state() for g in gens]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` when the next epoch's iterator is made."""
        self._resume = dict(state)
