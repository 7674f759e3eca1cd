"""Run log: records, lifecycle, queries, frames, crash marking — on every backend."""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time

import pytest
from tinydb import Query

from workbench import RunLog, RunLogError
from workbench.runlog import RunLogFileError
from workbench.runlog.log import TRANSITIONS


def test_start_creates_full_record(runlog):
    cfg = {"optimizer": {"name": "Adam", "params": {"lr": 1e-3}}, "seed": 7}
    run = runlog.start("first", "baseline", cfg, tags=["a", "b"], dataset={"sha256": "abc"})
    rec = runlog.get(run.id)
    assert rec["name"] == "first" and rec["kind"] == "baseline" and rec["status"] == "running"
    assert rec["config"] == cfg
    assert rec["tags"] == ["a", "b"]
    assert rec["dataset"] == {"sha256": "abc"}
    assert rec["env"]["seed"] == 7 and rec["env"]["python"] and rec["env"]["workbench"]
    assert rec["pid"] == os.getpid() and rec["host"] == socket.gethostname()
    assert rec["dir"] == str(runlog.run_dir(run.id)) and run.dir.is_dir()
    for key in ("created_at", "updated_at", "test_config", "summary", "epochs", "error", "metrics"):
        assert key in rec
    run.finish("completed")


def test_metrics_folded_into_record_and_frames(runlog):
    run = runlog.start("m", "baseline", {"seed": 3})
    for s in range(10):
        run.log_metrics({"train_loss": 1.0 / (s + 1)}, step=s)
    run.log_epoch(0, {"val_loss": 0.4, "val_accuracy": 0.75})
    rec = runlog.get(run.id)
    losses = [r["train_loss"] for r in rec["metrics"] if "train_loss" in r]
    assert losses == pytest.approx([1.0 / (s + 1) for s in range(10)])
    assert rec["epochs"] == [{"epoch": 0, "val_loss": 0.4, "val_accuracy": 0.75}]
    mf = runlog.metrics_frame(run.id)
    assert list(mf["train_loss"].dropna())[-1] == pytest.approx(0.1)
    assert mf["val_accuracy"].dropna().tolist() == [0.75]
    run.finish("completed", summary={"accuracy": 0.8})
    df = runlog.to_frame()
    assert df.loc[0, "config.seed"] == 3
    assert df.loc[0, "summary.accuracy"] == 0.8
    assert df.loc[0, "last.train_loss"] == pytest.approx(0.1)
    assert runlog.get(run.id)["metrics_summary"]["train_loss"]["count"] == 10


def test_config_flattened_in_frame(runlog):
    runlog.start("a", "baseline", {"optimizer": {"name": "SGD", "lr": 0.1}, "batch_size": 8}).finish()
    runlog.start("b", "maml", {"optimizer": {"name": "Adam", "lr": 0.001}, "batch_size": 8}).finish()
    df = runlog.to_frame()
    assert list(df["config.optimizer.name"]) == ["SGD", "Adam"]
    assert list(df["config.batch_size"]) == [8, 8]
    assert len(df) == 2
    assert list(runlog.to_frame(kind="maml")["name"]) == ["b"]
    assert list(runlog.to_frame(name="a", status="completed")["config.optimizer.lr"]) == [0.1]
    assert runlog.to_frame(kind="nope").empty


def test_lifecycle_and_invalid_transitions(runlog):
    run = runlog.start("life", "baseline", {})
    run.set_status("trained")
    run.set_status("testing")
    run.finish("completed", summary={"accuracy": 0.9})
    rec = runlog.get(run.id)
    assert [h["status"] for h in rec["history"]] == ["running", "trained", "testing", "completed"]
    assert rec["durations"]["train_s"] >= 0 and rec["durations"]["test_s"] >= 0
    assert rec["ended_at"] is not None
    with pytest.raises(RunLogError, match="cannot go from 'completed' to 'running'"):
        run.set_status("running")
    with pytest.raises(RunLogError, match="unknown status 'done'"):
        run.set_status("done")
    failed = runlog.start("f", "baseline", {})
    failed.finish("failed", error="ValueError: boom")
    assert runlog.get(failed.id)["error"] == "ValueError: boom"
    for target in TRANSITIONS:
        if target != "failed":
            with pytest.raises(RunLogError):
                failed.set_status(target)


def test_queued_then_running(runlog):
    run = runlog.start("q", "baseline", {}, status="queued")
    assert runlog.get(run.id)["started_at"] is None
    assert not run.beating  # nobody works on a queued run in this process yet
    run.set_status("running")
    assert runlog.get(run.id)["started_at"] is not None
    assert run.beating
    run.finish("completed")
    assert not run.beating


def test_find_resolve_delete(runlog):
    a = runlog.start("alpha", "baseline", {}, tags=["sweep1"])
    b = runlog.start("beta", "maml", {}, tags=["sweep1", "x"])
    b.finish("completed")
    assert [r["id"] for r in runlog.find(kind="maml")] == [b.id]
    assert [r["id"] for r in runlog.find(tag="sweep1")] == [a.id, b.id]
    assert [r["id"] for r in runlog.find(tag="x", kind="maml", status="completed")] == [b.id]
    assert [r["id"] for r in runlog.find(status=["running", "completed"])] == [a.id, b.id]
    assert runlog.find(status=[]) == []
    assert runlog.find(name="alpha", status="completed") == []
    assert [r["id"] for r in runlog.find(parent=None, name="beta")] == [b.id]  # other fields: equality
    assert [r["name"] for r in runlog.search(Query().kind == "maml")] == ["beta"]
    assert runlog.resolve("beta") == b.id
    assert runlog.resolve(b.id[:-1]) == b.id or b.id[:-1] == a.id[:-1]
    common = os.path.commonprefix([a.id, b.id])  # at least the year
    with pytest.raises(RunLogError, match="ambiguous"):
        runlog.resolve(common)
    runlog.delete(a.id)
    assert not runlog.run_dir(a.id).exists()
    with pytest.raises(RunLogError, match="no run with id or name"):
        runlog.get(a.id)
    assert [r["id"] for r in runlog.find(tag="sweep1")] == [b.id]


def test_get_without_metrics_reads_no_metrics_and_raw_alias(runlog, monkeypatch):
    run = runlog.start("g", "baseline", {})
    run.log_metrics({"loss": 1.0}, step=0)
    run.finish("completed")

    def boom(_):
        raise AssertionError("get(metrics=False) read the metrics")

    monkeypatch.setattr(runlog.store, "read_metrics", boom)
    rec = runlog.get(run.id, metrics=False)
    assert rec["status"] == "completed" and "metrics" not in rec
    assert runlog._raw(run.id)["id"] == run.id  # kept until the last caller moves to get(..., metrics=False)
    assert runlog.get("g", metrics=False)["id"] == run.id  # names still resolve


def test_reopen_by_path_sees_the_same_runs(runlog):
    run = runlog.start("persist", "baseline", {"k": 1}, tags=["t"])
    run.log_metrics({"loss": 0.5}, step=0)
    run.finish("completed", summary={"accuracy": 0.5})
    with RunLog(runlog.path) as again:
        rec = again.get(run.id)
        assert rec["summary"] == {"accuracy": 0.5} and rec["metrics"][0]["loss"] == 0.5
        assert again.store.count() == 1


def test_default_path_from_workbench_home(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WORKBENCH_DB", raising=False)
    log = RunLog()
    assert log.path == tmp_path / "home" / "runs.db"
    run = log.start("x", "baseline", {})
    assert run.dir == tmp_path / "home" / "runs" / run.id
    run.finish()
    # a path to the old file name is the same log (its runs.json, if any, is migrated into runs.db)
    assert RunLog(tmp_path / "home" / "runs.json").get(run.id)["status"] == "completed"


def test_workbench_db_points_the_default_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WORKBENCH_DB", str(tmp_path / "team" / "shared.db"))
    log = RunLog()
    assert log.path == tmp_path / "team" / "shared.db" and log.runs_dir == tmp_path / "team" / "shared_runs"
    monkeypatch.setenv("WORKBENCH_DB", "mysql://nope")
    with pytest.raises(RunLogError, match="unknown run-log location"):
        RunLog()


def test_dead_process_marked_crashed(location):
    code = (
        "import sys; from workbench import RunLog;"
        f"r = RunLog({str(location)!r}).start('doomed', 'baseline', {{}}); r.log_metrics({{'train_loss': 1.0}}, step=0);"
        "r.flush(); print(r.id); sys.stdout.flush(); import os; os._exit(0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rid = out.stdout.strip()
    log = RunLog(location)  # opening marks it
    rec = log.get(rid)
    assert rec["status"] == "crashed"
    assert "is gone" in rec["error"]
    assert rec["metrics"][0]["train_loss"] == 1.0


def test_other_host_stale_heartbeat_marked_crashed(runlog):
    run = runlog.start("remote", "baseline", {})
    run.update(host="some-other-host")
    run._stop.set()
    run._hb.join()
    assert runlog.mark_crashed(stale_after=60) == []  # beat at start: fresh
    runlog.store.beat(run.id, at=time.time() - 3600)
    assert runlog.mark_crashed(stale_after=60) == [run.id]
    rec = runlog.get(run.id)
    assert rec["status"] == "crashed" and "no heartbeat from some-other-host" in rec["error"]


def test_live_run_not_marked_crashed(runlog):
    run = runlog.start("alive", "baseline", {})
    with RunLog(runlog.path) as other:
        assert other.get(run.id)["status"] == "running"
    run.finish()


def test_records_are_json_in_tinydb_file(tmp_path):
    log = RunLog(f"tinydb:{tmp_path / 'runs.json'}")
    run = log.start("j", "baseline", {"a": 1})
    data = json.loads((tmp_path / "runs.json").read_text())
    assert "_workbench" in data and "runs" in data
    assert [d["id"] for d in data["runs"].values()] == [run.id]
    assert (tmp_path / "runs" / run.id).is_dir()
    run.finish()


JSON_BAD = [
    (b'{"runs": {"1": {"id": "x"', "corrupt or truncated"),
    (b"\x00\x01garbage\xff", "corrupt or truncated"),
    (b"[1, 2, 3]", "top level is list"),
    (b'{"users": {"1": {"name": "bob"}}}', "not a workbench run log"),
    (b'{"runs": [1, 2]}', "not a TinyDB table"),
    (b"[" * 100_000, "nested too deeply"),
    (b'{"runs": {"1": {"pid": ' + b"9" * 5000 + b"}}}", "corrupt or truncated"),
]


@pytest.mark.parametrize("opener", ["migrate", "tinydb"])
@pytest.mark.parametrize("content,needle", JSON_BAD, ids=["truncated", "binary", "list", "foreign", "not-tables",
                                                         "deep-nesting", "huge-int"])
def test_bad_json_file_is_refused_and_left_untouched(tmp_path, content, needle, opener):
    path = tmp_path / "runs.json"
    path.write_bytes(content)
    with pytest.raises(RunLogFileError) as exc:
        RunLog(path if opener == "migrate" else f"tinydb:{path}")
    assert str(path) in str(exc.value) and needle in str(exc.value)
    assert path.read_bytes() == content
    assert not (tmp_path / "runs.db").exists() or opener == "tinydb"  # no half-migrated log left behind


def _foreign_sqlite(path):
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE users (name TEXT)")
    c.execute("INSERT INTO users VALUES ('bob')")
    c.commit()
    c.close()


def _newer_runlog(path):
    RunLog(path).close()
    c = sqlite3.connect(path)
    c.execute("UPDATE wb_meta SET value = '99' WHERE key = 'version'")
    c.commit()
    c.close()


@pytest.mark.parametrize("make,needle", ids=["garbage", "json", "foreign-sqlite", "newer", "corrupt-pages"], argvalues=[
    (lambda p: p.write_bytes(b"\x00\x01garbage\xff" * 10), "not an SQLite database"),
    (lambda p: p.write_bytes(b'{"runs": {}, "_workbench": {}}'), "looks like a JSON (TinyDB) run log"),
    (_foreign_sqlite, "not a workbench run log (tables: ['users'])"),
    (_newer_runlog, "written by a newer workbench"),
    (lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000), "corrupt run log"),
])
def test_bad_sqlite_file_is_refused_and_left_untouched(tmp_path, make, needle):
    path = tmp_path / "runs.db"
    make(path)
    before = path.read_bytes()
    with pytest.raises(RunLogFileError) as exc:
        RunLog(path)
    assert str(path) in str(exc.value) and needle in str(exc.value)
    assert path.read_bytes() == before


@pytest.mark.parametrize("backend", ["sqlite", "tinydb"])
def test_file_corrupted_after_open_is_not_overwritten(runlog, backend):
    file = runlog.store.path
    runlog.start("a", "baseline", {})._stop.set()
    file.write_bytes(b'{"runs": {')
    with pytest.raises(RunLogFileError):
        runlog.start("b", "baseline", {})
    assert file.read_bytes() == b'{"runs": {'
    runlog.close()  # SQLite checkpoints its WAL on close: that must not write into the file either
    assert file.read_bytes() == b'{"runs": {'


def test_a_copied_log_points_at_its_own_run_folders(tmp_path):
    log = RunLog(tmp_path / "a" / "runs.db")
    run = log.start("moved", "baseline", {})
    run.finish()
    log.close()
    import shutil

    shutil.copytree(tmp_path / "a", tmp_path / "b")
    moved = RunLog(tmp_path / "b" / "runs.db")
    want = str(tmp_path / "b" / "runs" / run.id)
    assert moved.get(run.id)["dir"] == want
    assert [r["dir"] for r in moved.runs()] == [want] == [r["dir"] for r in moved.find(name="moved")]
