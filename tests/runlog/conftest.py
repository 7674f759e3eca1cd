"""Run-log fixtures: every ``runlog`` test runs against each backend.

- ``sqlite``: the default embedded store (``runs.db``);
- ``tinydb``: the pre-SQLite JSON file (``tinydb:runs.json``), still readable and writable;
- ``postgres``: a real PostgreSQL server started once per session (initdb into a temp folder,
  a free 127.0.0.1 port; as root it runs as the ``postgres`` user), one schema per test.
  Skipped, with the reason in the summary, only where no server can be started.
"""
from __future__ import annotations

import secrets

import pytest

BACKENDS = ("sqlite", "tinydb", "postgres")
_PG_SKIPPED: list[str] = []


@pytest.fixture(scope="session")
def pg_server():
    """URL of a scratch PostgreSQL server for this test session."""
    from workbench.runlog.pgserver import ServerUnavailable, local_server

    cm = local_server()
    try:
        url = cm.__enter__()
    except ServerUnavailable as exc:
        _PG_SKIPPED.append(str(exc))
        pytest.skip(f"PostgreSQL backend not tested: {exc}")
    try:
        yield url
    finally:
        cm.__exit__(None, None, None)


@pytest.fixture()
def pg_url(pg_server, tmp_path, monkeypatch):
    """A fresh schema on the session's server; per-run folders under a per-test WORKBENCH_HOME."""
    import psycopg

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    schema = "t_" + secrets.token_hex(6)
    with psycopg.connect(pg_server, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    yield f"{pg_server}?options=-csearch_path%3D{schema}"
    with psycopg.connect(pg_server, autocommit=True) as c:
        c.execute(f"DROP SCHEMA {schema} CASCADE")


def location_for(backend: str, request, tmp_path):
    if backend == "sqlite":
        return tmp_path / "runs.db"
    if backend == "tinydb":
        return f"tinydb:{tmp_path / 'runs.json'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture()
def location(backend, request, tmp_path):
    """Where a fresh run log of ``backend`` lives (what ``RunLog(location)`` opens)."""
    return location_for(backend, request, tmp_path)


@pytest.fixture()
def runlog(location):
    """A fresh run log on each backend (overrides the suite-wide SQLite-only fixture)."""
    from workbench import RunLog

    log = RunLog(location)
    yield log
    log.close()


def pytest_terminal_summary(terminalreporter):
    if _PG_SKIPPED:
        terminalreporter.write_line(f"POSTGRESQL RUN-LOG TESTS SKIPPED: {_PG_SKIPPED[0]}", yellow=True)
