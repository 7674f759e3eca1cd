"""Preset networks shared by baseline training and meta-learning.

- ``conv4``: the few-shot Conv-4 (Vinyals 2016, Finn 2017): 4 × [3×3 conv, BatchNorm,
  ReLU, 2×2 max-pool]. ``track_running_stats=False`` gives transductive BatchNorm (batch
  statistics at test time too), as in the original MAML code.
- ``small_cnn``: a quick two-block CNN for baselines on small images.
- ``resnet18``: torchvision's ResNet-18, random init; pretrained weights only from a local file.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def conv_block(in_ch: int, out_ch: int, track_running_stats: bool = True) -> nn.Sequential:
    """3×3 conv (padding 1) → BatchNorm → 2×2 max-pool → ReLU.

    The usual order is ReLU then pool; max-pooling first gives the same values and gradients
    (ReLU is monotone) and runs the ReLU on a 4× smaller map. Only parameter-free layers moved,
    so weights saved with either order load into the other.
    """
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1),
        nn.BatchNorm2d(out_ch, track_running_stats=track_running_stats),
        nn.MaxPool2d(2, ceil_mode=False),
        nn.ReLU(inplace=False),
    )


class Conv4(nn.Module):
    """Conv-4 feature extractor plus an optional linear head.

    Args:
        in_channels: 1 for glyphs/Omniglot, 3 for RGB.
        n_out: classes of the linear head; ``0`` for features only (ProtoNet).
        hidden: filters per block (64 in the papers, 32 is common on CPU).
        image_size: input side, used to size the head (28 → 1×1, 84 → 5×5 maps).
        track_running_stats: ``False`` = transductive BatchNorm (MAML's choice).
    """

    def __init__(self, in_channels: int = 1, n_out: int = 5, hidden: int = 64, image_size: int = 28,
                 track_running_stats: bool = True) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_block(in_channels, hidden, track_running_stats),
            conv_block(hidden, hidden, track_running_stats),
            conv_block(hidden, hidden, track_running_stats),
            conv_block(hidden, hidden, track_running_stats),
            nn.Flatten(),
        )
        side = image_size
        for _ in range(4):
            side //= 2
        self.feature_dim = hidden * max(side, 1) ** 2
        self.head = nn.Linear(self.feature_dim, n_out) if n_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def conv4(in_channels: int = 1, n_out: int = 5, hidden: int = 64, image_size: int = 28,
          track_running_stats: bool = True) -> Conv4:
    """Build a :class:`Conv4`."""
    return Conv4(in_channels, n_out, hidden, image_size, track_running_stats)


def small_cnn(in_channels: int = 3, n_out: int = 10, hidden: int = 32) -> nn.Sequential:
    """Two conv blocks, global average pooling and a linear head: fast on CPU at any image size."""
    return nn.Sequential(
        conv_block(in_channels, hidden),
        conv_block(hidden, hidden * 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(hidden * 2, n_out),
    )


def resnet18(in_channels: int = 3, n_out: int = 10, weights_path: str | Path | None = None) -> nn.Module:
    """torchvision ResNet-18 with random init, or weights from a local ``.pth`` file (never downloaded).

    With local weights the 1000-way ImageNet head is loaded first and then replaced.
    """
    from torchvision.models import resnet18 as tv_resnet18

    from .weights import load_checkpoint

    model = tv_resnet18(weights=None)
    if weights_path is not None:
        p = Path(weights_path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"resnet18 weights_path {str(p)!r} is not a file (weights are never downloaded)")
        model.load_state_dict(load_checkpoint(p))
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.fc = nn.Linear(model.fc.in_features, n_out)
    return model


PRESETS = {"conv4": conv4, "small_cnn": small_cnn, "resnet18": resnet18}
