"""Fixtures for the training tests: a generated shapes folder and a fast command."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from shapes import make_shapes  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)  # the CI box has 2 cores shared by every test process
    yield


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """4 classes × 24 Pillow-drawn shapes, 24×24 pixels."""
    return make_shapes(tmp_path_factory.mktemp("shapes"), per_class=24, size=24)


def fast_command(**over) -> dict:
    """A small conv net that learns the shapes in a few seconds on one CPU thread."""
    cmd = {
        "name": "fast",
        "image_size": 24,
        "model": {"layers": [
            {"name": "Conv2d", "params": {"in_channels": "auto", "out_channels": 16, "kernel_size": 3, "padding": 1}},
            {"name": "ReLU"},
            {"name": "MaxPool2d", "params": {"kernel_size": 2}},
            {"name": "Conv2d", "params": {"in_channels": "auto", "out_channels": 32, "kernel_size": 3, "padding": 1}},
            {"name": "ReLU"},
            {"name": "AdaptiveMaxPool2d", "params": {"output_size": 1}},
            {"name": "Flatten"},
            {"name": "Linear", "params": {"in_features": "auto", "out_features": "n_labels"}},
        ]},
        "optimizer": {"name": "Adam", "params": {"lr": 0.005}},
        "batch_size": 16,
        "epochs": 6,
        "seed": 0,
        "trainer": {"accelerator": "cpu"},
    }
    cmd.update(over)
    return cmd


@pytest.fixture()
def cmd() -> dict:
    return fast_command()
