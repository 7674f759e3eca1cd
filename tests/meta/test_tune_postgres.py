"""A study on PostgreSQL: two worker processes share one Optuna study (and the run log) on a real server.

The server is the run-log tests' throwaway one (:func:`workbench.runlog.pgserver.local_server`:
initdb into a temp folder, a free 127.0.0.1 port); skipped with its stated reason where no
server can be started.
"""
from __future__ import annotations

import secrets

import optuna
import pytest

from workbench.meta import synthetic
from workbench.meta.space import metadataset_space
from workbench.meta.study import rdb_url
from workbench.meta.tune import tune
from workbench.runlog import RunLog


@pytest.fixture(scope="module")
def pg_server():
    from workbench.runlog.pgserver import ServerUnavailable, local_server

    cm = local_server()
    try:
        url = cm.__enter__()
    except ServerUnavailable as exc:
        pytest.skip(f"PostgreSQL study not tested: {exc}")
    try:
        yield url
    finally:
        cm.__exit__(None, None, None)


@pytest.fixture()
def pg_db(pg_server):
    """A fresh database on the server: ``postgresql://…/<db>``, as a team would hand out."""
    import psycopg

    name = "tune_" + secrets.token_hex(5)
    with psycopg.connect(pg_server, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    yield pg_server.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(pg_server, autocommit=True) as c:
        c.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_a_bare_postgresql_url_goes_through_psycopg3():
    assert rdb_url("postgresql://u@h:5/db").startswith(("postgresql+psycopg://", "postgresql://"))
    assert rdb_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert rdb_url("sqlite:///x.db") == "sqlite:///x.db"


@pytest.mark.slow
def test_two_workers_share_a_study_and_the_run_log_on_postgresql(tmp_path, pg_db):
    folder = synthetic.write_task(synthetic.TaskSpec("pg-dots", "dots", size=16, n_classes=3, per_class=8, seed=5),
                                  tmp_path / "tasks")
    log = RunLog(pg_db)  # the team's run log on the same server
    res = tune(folder, space=metadataset_space(), budget="4 trials", epochs=1, log=log, history=None,
               warm_start=False, pruner="none", workers=2, storage=pg_db, test=False)
    runs = log.find(tag=f"study:{res.name}")
    # exactly the budget (a worker that asks late is refused, not trained), from both processes
    assert len(runs) == 4 and len({r["pid"] for r in runs}) == 2  # two processes trained them
    # the study lives in the server: another client (another machine) reads the same trials
    study = optuna.load_study(study_name=res.name, storage=rdb_url(pg_db))
    own = [t for t in study.trials if not t.user_attrs.get("over_budget")]
    assert sorted(t.user_attrs["run_id"] for t in own) == sorted(r["id"] for r in runs)
    assert {t.state for t in own} == {optuna.trial.TrialState.COMPLETE}
    log.close()
