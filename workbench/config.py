"""Kept for code written before the command language moved to :mod:`workbench.commands`.

New code imports from :mod:`workbench.commands` (commands), :mod:`workbench.registry`
(``ConfigError``, ``Component``, component checks) and :mod:`workbench.nets.builder` (``ModelSpec``).
"""
from __future__ import annotations

from .commands import MONITORS, EarlyStopping, FewShotCommand, Split, TrainerOptions, TrainingCommand, parse
from .nets.builder import ModelSpec
from .registry import Component, ConfigError, build_component, check_params, unknown_name

__all__ = ["TrainingCommand", "FewShotCommand", "ConfigError", "Component", "ModelSpec", "Split", "TrainerOptions",
           "EarlyStopping", "MONITORS", "build_component", "check_params", "unknown_name", "parse"]
