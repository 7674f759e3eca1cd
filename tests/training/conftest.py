"""Fixtures for the training tests: a generated shapes folder and a fast command."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from training_support import fast_command, make_shapes  # noqa: E402,F401


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)  # the CI box has 2 cores shared by every test process
    yield


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """4 classes × 24 Pillow-drawn shapes, 24×24 pixels."""
    return make_shapes(tmp_path_factory.mktemp("shapes"), per_class=24, size=24)


@pytest.fixture()
def cmd() -> dict:
    return fast_command()
