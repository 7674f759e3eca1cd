"""Fixtures shared by the test suite."""
from __future__ import annotations

import pytest


@pytest.fixture()
def runlog(tmp_path):
    """A fresh run log in a temporary folder."""
    from workbench import RunLog

    return RunLog(tmp_path / "runs.json")
