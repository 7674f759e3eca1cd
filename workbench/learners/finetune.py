"""The fine-tune baseline ("A Closer Look at Few-shot Classification", Chen et al. 2019).

Pre-train an ordinary classifier on all meta-train classes (plain mini-batches, no episodes);
for each new task, freeze the features and fit a fresh linear head on the task's support set
(``head_steps`` of Adam), then score its queries. No meta-learning at all — the bar the
meta-learners should clear.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..nets.backbones import conv4
from .episodic import EpisodicModule, Scorer


def fit_head(z_support: torch.Tensor, y_support: torch.Tensor, n_way: int, steps: int = 100,
             lr: float = 0.01, seed: int = 0) -> nn.Linear:
    """A linear head trained on frozen support features (deterministic given ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    head = nn.Linear(z_support.shape[-1], n_way).to(z_support.device)
    with torch.no_grad():
        bound = 1.0 / z_support.shape[-1] ** 0.5
        head.weight.copy_(torch.rand(head.weight.shape, generator=g).mul_(2 * bound).sub_(bound))
        head.bias.zero_()
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    z = z_support.detach()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(head(z), y_support).backward()
        opt.step()
    return head


class Finetune(EpisodicModule):
    """Classifier pre-trained on meta-train classes; per-task linear head on frozen features."""

    trains_on = "images"

    def __init__(self, n_classes: int, in_channels: int = 1, image_size: int = 28, hidden: int = 64,
                 head_steps: int = 100, head_lr: float = 0.01, optimizer: str = "Adam",
                 optimizer_params: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = conv4(in_channels, n_classes, hidden, image_size, track_running_stats=True)

    @classmethod
    def from_command(cls, cmd: Any, data: Any = None) -> "Finetune":
        f = cmd.finetune
        return cls(n_classes=max(1, int(getattr(data, "n_classes", 1))), in_channels=cmd.channels, image_size=cmd.image_size,
                   hidden=cmd.model.params.hidden, head_steps=f.head_steps, head_lr=f.head_lr,
                   optimizer=cmd.optimizer.name, optimizer_params=cmd.optimizer.params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        self.log("train_loss", loss, on_step=True, prog_bar=True, batch_size=x.shape[0])
        self.log("train_accuracy", (logits.argmax(-1) == y).float().mean(), on_step=True, batch_size=x.shape[0])
        return loss

    def features(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net.features(x)

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, n_way: int) -> Scorer:
        """A fresh linear head fitted on the support set's frozen features."""
        with torch.enable_grad():
            head = fit_head(self.features(support_x), support_y, n_way, self.hparams.head_steps, self.hparams.head_lr)

        def score(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return head(self.features(x))
        return score
