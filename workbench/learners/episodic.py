"""Shared Lightning plumbing for episodic few-shot learners (MAML, ProtoNet, fine-tune).

Every learner implements one adaptation method, :meth:`EpisodicModule.adapt` (learn2learn's
idea): given one task's support set it returns a *scorer* — a function from query images to
logits — without changing the module. Scoring a task (:meth:`~EpisodicModule.task_logits`),
validation and testing here, and :func:`workbench.learners.adapt.adapt` (a classifier for new
classes) all go through it.

Lightning runs ``validate``/``test`` under ``torch.inference_mode()``. Adaptation needs
gradients there (MAML's inner loop, the fine-tune baseline's head), and tensors made in
inference mode can never enter autograd, so the eval step leaves inference mode, re-enables
gradients and clones the batch into ordinary tensors. Users can therefore call
``trainer.validate``/``trainer.test`` with any Trainer; ours also sets ``inference_mode=False``.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from .. import runtime
from . import taskparallel

Scorer = Callable[[torch.Tensor], torch.Tensor]


def build_optimizer(name: str, params: dict[str, Any] | None, parameters: Iterable[torch.nn.Parameter]):
    """An optimizer from a registry name (``torch.optim`` classes; never ``eval``)."""
    from ..registry import optimizers

    table = optimizers()
    if name not in table:
        raise ValueError(f"optimizer.name: unknown optimizer {name!r} (allowed: {', '.join(sorted(table))})")
    return table[name](parameters, **dict(params or {}))


class EpisodicModule(pl.LightningModule):
    """Base class: per-task evaluation on batches of episodes, logging ``{val,test}_accuracy``."""

    #: What meta-training batches are: ``"episodes"`` (tasks) or ``"images"`` (plain mini-batches
    #: over all meta-train classes, the fine-tune baseline's pre-training).
    trains_on = "episodes"
    #: Whether :meth:`adapt` only reads the module, so several tasks may be scored at once in
    #: worker threads (:mod:`.taskparallel`).
    parallel_tasks = False
    #: Per-episode accuracies of the last ``trainer.test`` (for the 95% CI).
    test_episode_accuracies: list[float]

    def __init__(self) -> None:
        super().__init__()
        self.test_episode_accuracies = []
        self._saved_threads: int | None = None

    def trains_on_task_pool(self) -> bool:
        """Whether meta-training runs its tasks on the task pool (MAML's ``vectorize: threads``)."""
        return False

    # While the task pool does the work, the job's own thread (sampling, optimizer, Lightning)
    # runs with one intra-op thread: its small operators gain nothing from more, and under a
    # competing load every multi-threaded operator stalls (measured: 0.65 s of waiting per
    # meta-iteration between batches with 2 threads, 0.01 s with 1). job_threads restores the
    # job's count if a run dies before the end hooks.
    def _pool_mode(self, on: bool) -> None:
        if on and self._saved_threads is None and self.device.type == "cpu":
            self._saved_threads = torch.get_num_threads()
            runtime.set_thread_count(1)
        elif not on and self._saved_threads is not None:
            runtime.set_thread_count(self._saved_threads)
            self._saved_threads = None

    def on_fit_start(self) -> None:
        self._pool_mode(self.trains_on_task_pool())

    def on_fit_end(self) -> None:
        self._pool_mode(False)

    @classmethod
    def from_command(cls, cmd: Any, data: Any = None) -> "EpisodicModule":
        """The module a few-shot command describes (``data.n_classes``: meta-train classes)."""
        raise NotImplementedError

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, n_way: int) -> Scorer:
        """Adapt to one task's support set; returns ``scorer(query_x) -> logits [n_query, n_way]``."""
        raise NotImplementedError

    def task_logits(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor,
                    n_way: int) -> torch.Tensor:
        """Adapt to one task's support set and return query logits ``[n_query, n_way]``."""
        return self.adapt(support_x, support_y, n_way)(query_x)

    def configure_optimizers(self):
        h = self.hparams
        return build_optimizer(h.optimizer, h.optimizer_params or {"lr": 1e-3}, self.parameters())

    def evaluate_batch(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-task query ``(loss, accuracy)`` for a batch of episodes, gradients available inside.

        Learners whose :meth:`adapt` only reads the module (``parallel_tasks``) score the tasks
        on the task pool on CPU, one intra-op thread each (the same numbers for any parallelism).
        """
        with torch.inference_mode(False):
            sx, sy, qx, qy = (t.clone() for t in batch)

        def one(i: int) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.inference_mode(False), torch.enable_grad():  # worker threads start in neither mode
                n_way = int(sy[i].max()) + 1
                logits = self.task_logits(sx[i], sy[i], qx[i], n_way).detach()
                return F.cross_entropy(logits, qy[i]), (logits.argmax(-1) == qy[i]).float().mean()

        if self.parallel_tasks and sx.device.type == "cpu":
            out = taskparallel.run_tasks(one, sx.shape[0], taskparallel.job_parallelism())
        else:
            out = [one(i) for i in range(sx.shape[0])]
        return torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])

    def validation_step(self, batch, batch_idx: int):
        loss, acc = self.evaluate_batch(batch)
        b = loss.shape[0]
        self.log("val_loss", loss.mean(), on_epoch=True, batch_size=b, sync_dist=True)
        self.log("val_accuracy", acc.mean(), on_epoch=True, prog_bar=True, batch_size=b, sync_dist=True)

    def on_test_start(self) -> None:
        self._pool_mode(self.parallel_tasks)

    def on_test_end(self) -> None:
        self._pool_mode(False)

    def on_test_epoch_start(self) -> None:
        self.test_episode_accuracies = []

    def test_step(self, batch, batch_idx: int):
        loss, acc = self.evaluate_batch(batch)
        self.test_episode_accuracies.extend(float(a) for a in acc)
        b = loss.shape[0]
        self.log("test_loss", loss.mean(), on_epoch=True, batch_size=b, sync_dist=True)
        self.log("test_accuracy", acc.mean(), on_epoch=True, batch_size=b, sync_dist=True)
