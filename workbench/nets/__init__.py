"""Networks: preset backbones and (see ``builder``) declarative layer specs."""
from .backbones import PRESETS, Conv4, conv4, resnet18, small_cnn

__all__ = ["PRESETS", "Conv4", "conv4", "resnet18", "small_cnn"]
