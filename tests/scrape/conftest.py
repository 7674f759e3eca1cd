"""Fixtures for the scraping tests: a live loopback stub over real HTTP (no mocks)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # the hostile-server helper beside the tests

import pytest

from workbench.scrape import SerpApiClient, SerpApiStub


@pytest.fixture()
def stub():
    """A fresh SerpApi stub on a free 127.0.0.1 port."""
    with SerpApiStub() as s:
        yield s


@pytest.fixture()
def client(stub):
    """A client for ``stub`` with test-short backoff and timeouts."""
    with SerpApiClient(base_url=stub.base_url, retries=2, backoff=0.01, timeout=(2.0, 5.0)) as c:
        yield c
