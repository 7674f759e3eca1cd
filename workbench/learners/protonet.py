"""Prototypical Networks (Snell et al. 2017): metric-based few-shot learning.

An encoder maps images to embeddings; each class's *prototype* is the mean embedding of its
support images; a query is scored by the negative squared Euclidean distance to every
prototype (``logits = -‖f(x) - c_k‖²``), trained with cross-entropy over episodes. Meta-training
with more ways than testing (``train_n_way`` in the data module) helps, as in the paper.

**Each task is its own BatchNorm batch** during meta-training, as in the paper (one episode per
step) and easyfsl: a meta-batch's tasks are encoded one by one — on CPU in parallel on the task
pool (:mod:`.taskparallel`, single-threaded workers, channels-last Conv-4 from :mod:`.fastconv`),
their gradients summed in task order, and each task's batch statistics folded into the running
statistics in task order. The numbers therefore do not depend on the thread count, and a
ProtoNet job keeps its speed when other work loads the cores (one encoder pass over the whole
meta-batch with 2 OpenMP threads took 3.9 s per step under load instead of ~0.3 s). Until issue
17 the meta-batch was one BatchNorm batch; with ``meta_batch: 1`` both are the same.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from torch import nn

from ..nets.backbones import conv4
from . import taskparallel
from .episodic import EpisodicModule, Scorer
from .fastconv import channels_last, conv4_function


def prototypes(z_support: torch.Tensor, y_support: torch.Tensor, n_way: int) -> torch.Tensor:
    """Class means ``[..., n_way, D]`` of support embeddings ``[..., S, D]`` (labels ``[..., S]``)."""
    onehot = F.one_hot(y_support, n_way).to(z_support.dtype)            # [..., S, N]
    sums = onehot.transpose(-1, -2) @ z_support                           # [..., N, D]
    return sums / onehot.sum(-2).unsqueeze(-1).clamp_min(1)


def proto_logits(z_query: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """Negative squared Euclidean distances ``[..., Q, N]`` from queries to prototypes."""
    return -(z_query.unsqueeze(-2) - protos.unsqueeze(-3)).square().sum(-1)


class ProtoNet(EpisodicModule):
    """ProtoNet over a Conv-4 encoder (no head). BatchNorm keeps running statistics (eval
    mode uses them), so queries are scored independently of each other."""

    parallel_tasks = True  # adapt() only reads the encoder (eval mode): tasks can be scored at once

    def __init__(self, in_channels: int = 1, image_size: int = 28, hidden: int = 64, optimizer: str = "Adam",
                 optimizer_params: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.encoder = conv4(in_channels, 0, hidden, image_size, track_running_stats=True)

    @classmethod
    def from_command(cls, cmd: Any, data: Any = None) -> "ProtoNet":
        return cls(in_channels=cmd.channels, image_size=cmd.image_size, hidden=cmd.model.params.hidden,
                   optimizer=cmd.optimizer.name, optimizer_params=cmd.optimizer.params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings, computed in channels-last layout on CPU: 3-4× faster pooling and BatchNorm
        there (:mod:`.fastconv`; numbers: benchmarks/bench_protonet.py)."""
        return self.encoder(channels_last(x) if x.device.type == "cpu" else x)

    def trains_on_task_pool(self) -> bool:
        return self.device.type == "cpu"

    def task_loss(self, params: dict[str, torch.Tensor], sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor,
                  qy: torch.Tensor, stats: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One task's query ``(loss, accuracy)`` in training mode (the task is the BatchNorm batch);
        its BatchNorm statistics are appended to ``stats``. Reads only its arguments (thread-safe)."""
        fwd = conv4_function(self.encoder, "channels_last" if sx.device.type == "cpu" else "channels_first")
        assert fwd is not None  # the encoder is always a Conv-4
        z = fwd(params, torch.cat([sx, qx]), stats)
        logits = proto_logits(z[sx.shape[0]:], prototypes(z[: sx.shape[0]], sy, int(sy.max()) + 1))
        return F.cross_entropy(logits, qy), (logits.argmax(-1) == qy).float().mean()

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        sx, sy, qx, qy = batch
        b = sx.shape[0]
        params = dict(self.encoder.named_parameters())
        leaves = list(params.values())

        def one(i: int):
            stats: list = []
            with torch.enable_grad():
                lo, ac = self.task_loss(params, sx[i], sy[i], qx[i], qy[i], stats)
                gs = torch.autograd.grad(lo / b, leaves)  # each task's share of the mean
            return gs, lo.detach(), ac.detach(), stats

        parallel = taskparallel.job_parallelism() if self.trains_on_task_pool() else 1
        out = taskparallel.run_tasks(one, b, parallel)
        self.fold_batch_stats([o[3] for o in out])
        loss = torch.stack([o[1] for o in out]).mean()
        acc = torch.stack([o[2] for o in out]).mean()
        self.log("train_loss", loss, on_step=True, prog_bar=True, batch_size=b)
        self.log("train_accuracy", acc, on_step=True, batch_size=b)
        return taskparallel.with_gradients(loss, leaves, taskparallel.sum_in_order([o[0] for o in out]))

    @torch.no_grad()
    def fold_batch_stats(self, per_task: list[list[tuple[torch.Tensor, torch.Tensor]]]) -> None:
        """Update the BatchNorm running statistics with each task's batch statistics, in task order
        (what a training-mode forward of each task would have done)."""
        bns = [m for m in self.encoder.modules() if isinstance(m, nn.BatchNorm2d)]
        for stats in per_task:
            for bn, (mean, var) in zip(bns, stats):
                bn.num_batches_tracked += 1
                m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
                bn.running_mean.mul_(1 - m).add_(mean, alpha=m)
                bn.running_var.mul_(1 - m).add_(var, alpha=m)

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, n_way: int) -> Scorer:
        """Class prototypes of the support set; queries are scored by distance to them."""
        with torch.no_grad():
            protos = prototypes(self.embed(support_x), support_y, n_way)

        def score(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return proto_logits(self.embed(x), protos)
        return score
