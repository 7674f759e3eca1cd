"""Fixtures for the model-based meta-learning tests: small image folders and fast commands."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from model_support import make_shapes  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)  # 2 shared cores
    yield


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """4 classes × 24 shapes at 24 px (4 training batches of 16 an epoch)."""
    return make_shapes(tmp_path_factory.mktemp("shapes"), per_class=24, size=24)


@pytest.fixture(scope="session")
def three_shapes(tmp_path_factory) -> Path:
    """3 of the same 4 classes (another label count: the head cannot be loaded)."""
    return make_shapes(tmp_path_factory.mktemp("three"), per_class=16, size=24, classes=("circle", "square", "cross"),
                       seed=1)
