"""Prototypical Networks (Snell et al. 2017): metric-based few-shot learning.

An encoder maps images to embeddings; each class's *prototype* is the mean embedding of its
support images; a query is scored by the negative squared Euclidean distance to every
prototype (``logits = -‖f(x) - c_k‖²``), trained with cross-entropy over episodes. Meta-training
with more ways than testing (``train_n_way`` in the data module) helps, as in the paper.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..nets.backbones import conv4
from .episodic import EpisodicModule, Scorer
from .fastconv import channels_last


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
        # channels-last activations: 3-4× faster pooling and BatchNorm on CPU (see .fastconv)
        return self.encoder(channels_last(x))

    def batch_logits(self, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor) -> torch.Tensor:
        """Query logits for a batch of tasks ``[B, …]`` with one encoder pass over all images."""
        b, s = sx.shape[:2]
        q = qx.shape[1]
        z = self(torch.cat([sx.flatten(0, 1), qx.flatten(0, 1)]))
        zs, zq = z[: b * s].view(b, s, -1), z[b * s:].view(b, q, -1)
        n_way = int(sy.max()) + 1
        return proto_logits(zq, prototypes(zs, sy, n_way))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        sx, sy, qx, qy = batch
        logits = self.batch_logits(sx, sy, qx)
        loss = F.cross_entropy(logits.flatten(0, 1), qy.flatten())
        acc = (logits.argmax(-1) == qy).float().mean()
        self.log("train_loss", loss, on_step=True, prog_bar=True, batch_size=sx.shape[0])
        self.log("train_accuracy", acc, on_step=True, batch_size=sx.shape[0])
        return loss

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, n_way: int) -> Scorer:
        """Class prototypes of the support set; queries are scored by distance to them."""
        with torch.no_grad():
            protos = prototypes(self(support_x), support_y, n_way)

        def score(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return proto_logits(self(x), protos)
        return score
