"""Opening a pre-SQLite run log (runs.json + runs/*/metrics.jsonl) moves it into runs.db, losing nothing."""
from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from workbench import RunLog, RunLogError
from workbench.runlog import RunLogFileError


def _old_log(folder, n=6):
    """A log written by the TinyDB store (the format every older workbench wrote), with a crashed victim."""
    log = RunLog(f"tinydb:{folder / 'runs.json'}")
    ids = []
    for i in range(n):
        run = log.start(f"run-{i}", "maml" if i % 2 else "baseline", {"i": i, "opt": {"lr": 10.0 ** -i}},
                        tags=[f"sweep:{i % 3}"], dataset={"sha256": f"{i:064x}"})
        for s in range(20 + i):
            run.log_metrics({"train_loss": 1.0 / (s + 1), **({"odd": math.nan} if s == 3 else {})}, step=s)
        run.log_epoch(0, {"val_accuracy": 0.5 + i / 100})
        if i == n - 1:
            run.flush()
            run._stop.set()  # left "running": its process "dies" before it finishes
        else:
            run.finish("completed" if i % 3 else "failed", summary={"accuracy": i / 10, "nan": math.nan},
                       error=None if i % 3 else "boom")
        ids.append(run.id)
    run.update(pid=2 ** 22 + 12345)  # the last run (ids[-1]): a pid that is not alive
    return ids


def _snapshot(folder, ids):
    log = RunLog(f"tinydb:{folder / 'runs.json'}", check_crashed=False)
    return {rid: json.dumps(log.get(rid), sort_keys=True, allow_nan=True) for rid in ids}


def _norm(rec):
    rec = dict(rec)
    rec.pop("dir")
    return json.dumps(rec, sort_keys=True, allow_nan=True)


def test_migration_is_loss_free_and_keeps_the_old_file(tmp_path):
    ids = _old_log(tmp_path)
    before = {rid: _norm(json.loads(s)) for rid, s in _snapshot(tmp_path, ids).items()}
    raw = (tmp_path / "runs.json").read_bytes()
    metric_files = {rid: (tmp_path / "runs" / rid / "metrics.jsonl").read_bytes() for rid in ids}

    log = RunLog(tmp_path / "runs.json")  # the path everyone used: now the SQLite file next to it
    assert log.path == tmp_path / "runs.db"
    assert not (tmp_path / "runs.json").exists()
    assert (tmp_path / "runs.json.bak").read_bytes() == raw  # the old file is kept, byte for byte
    for rid in ids[:-1]:
        assert _norm(log.get(rid)) == before[rid]
    victim = log.get(ids[-1])  # the dead "running" run is marked on open, after the copy
    assert victim["status"] == "crashed" and "is gone" in victim["error"]
    assert len(victim["metrics"]) == 20 + len(ids) - 1 + 1  # steps + the epoch row
    assert [r["id"] for r in log.find(tag="sweep:1")] == [ids[1], ids[4]]
    assert math.isnan(log.get(ids[1])["summary"]["nan"])
    for rid in ids:  # metrics files are not touched
        assert (tmp_path / "runs" / rid / "metrics.jsonl").read_bytes() == metric_files[rid]
    (report,) = [json.loads(v) for k, v in log.store.meta().items() if k.startswith("migrated:")]
    assert report["runs"] == len(ids) and report["quarantined"] == 0
    assert report["metric_rows"] == sum(20 + i + 1 for i in range(len(ids)))
    # reopening migrates nothing again and changes nothing
    again = RunLog(tmp_path / "runs.json")
    assert [_norm(r) for r in again.runs()] == [_norm(r) for r in log.runs()]
    assert not (tmp_path / "runs.json.bak2").exists()


def test_malformed_records_are_kept_aside_not_fatal(tmp_path):
    ids = _old_log(tmp_path, n=2)
    data = json.loads((tmp_path / "runs.json").read_text())
    data["runs"]["90"] = {"name": "no id", "status": "completed"}
    data["runs"]["91"] = {**data["runs"]["1"], "id": "20240101-000000-aaaaaaaaaa", "pid": "abc", "status": "running"}
    data["runs"]["92"] = {**data["runs"]["1"], "id": "../../escape"}
    data["runs"]["93"] = dict(data["runs"]["1"])  # a duplicate id
    (tmp_path / "runs.json").write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="4 malformed record"):
        log = RunLog(tmp_path / "runs.json")
    assert sorted(r["id"] for r in log.runs()) == sorted(ids)
    kept = log.store.quarantined()
    reasons = " | ".join(q["reason"] for q in kept)
    assert len(kept) == 4 and "no id" in reasons and "pid 'abc'" in reasons and "'../../escape'" in reasons
    assert "duplicate id" in reasons
    assert json.loads(kept[0]["raw"]) == {"name": "no id", "status": "completed"}


def test_old_log_with_malformed_records_still_opens_as_tinydb(tmp_path):
    ids = _old_log(tmp_path, n=2)
    data = json.loads((tmp_path / "runs.json").read_text())
    data["runs"]["90"] = {"name": "no id", "status": "running", "pid": "abc"}
    (tmp_path / "runs.json").write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="skipped malformed record #90"):
        log = RunLog(f"tinydb:{tmp_path / 'runs.json'}")
        assert [r["id"] for r in log.runs()] == ids


def test_two_processes_opening_an_old_log_migrate_it_once(tmp_path):
    ids = _old_log(tmp_path, n=4)
    code = textwrap.dedent(f"""
        from workbench import RunLog
        print(len(RunLog({str(tmp_path / 'runs.json')!r}).runs()))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert outs == [str(len(ids))] * 3
    assert (tmp_path / "runs.json.bak").exists() and not (tmp_path / "runs.json.bak2").exists()
    assert len(RunLog(tmp_path / "runs.db").runs()) == len(ids)


def test_migration_never_overwrites_a_different_run_already_in_the_new_log(tmp_path):
    ids = _old_log(tmp_path, n=2)
    raw = (tmp_path / "runs.json").read_bytes()
    RunLog(tmp_path / "runs.json")  # migrated
    (tmp_path / "runs.json.bak").rename(tmp_path / "runs.json")
    c = sqlite3.connect(tmp_path / "runs.db")
    rec = json.loads(c.execute("SELECT record FROM wb_runs WHERE id = ?", (ids[0],)).fetchone()[0])
    rec["summary"] = {"accuracy": 0.99}
    c.execute("UPDATE wb_runs SET record = ? WHERE id = ?", (json.dumps(rec), ids[0]))
    c.commit()
    c.close()
    with pytest.raises(RunLogError, match=f"run {ids[0]} .* already exists .* with different content"):
        RunLog(tmp_path / "runs.json")
    assert (tmp_path / "runs.json").read_bytes() == raw


def test_stale_temp_files_of_killed_rewrites_are_cleaned(tmp_path):
    """Issue 12: a SIGKILL mid-rewrite left ``.runs.json.*.tmp`` copies forever."""
    (tmp_path / "runs.json").write_text('{"_workbench": {"1": {"format": "workbench-runlog", "version": 1}},'
                                        ' "runs": {}}')
    for k in range(3):
        (tmp_path / f".runs.json.{k}abc.tmp").write_text('{"runs": {"1": {"id"')
    RunLog(tmp_path / "runs.json")
    assert list(tmp_path.glob(".runs.json.*.tmp")) == []


def test_stale_temp_files_are_cleaned_by_the_tinydb_store_too(tmp_path):
    _old_log(tmp_path, n=1)
    (tmp_path / ".runs.json.x1.tmp").write_text("{")
    RunLog(f"tinydb:{tmp_path / 'runs.json'}")
    assert list(tmp_path.glob(".runs.json.*.tmp")) == []


@pytest.mark.parametrize("name", ["runs.json", "runs.db"])
def test_empty_log_next_to_run_folders_is_refused(tmp_path, name):
    """Issue 12: a 0-byte runs.json next to a non-empty runs/ was silently treated as a new log."""
    (tmp_path / "runs" / "20240101-000000-abcdef0123").mkdir(parents=True)
    (tmp_path / "runs" / "20240101-000000-abcdef0123" / "metrics.jsonl").write_text('{"step": 0}\n')
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(RunLogFileError, match="empty .0-byte. run log next to 1 run folder"):
        RunLog(tmp_path / name)
    assert (tmp_path / name).read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["runs", name])


def test_empty_log_without_run_folders_is_a_new_log(tmp_path):
    (tmp_path / "runs.json").write_bytes(b"")
    log = RunLog(tmp_path / "runs.json")
    assert log.runs() == [] and (tmp_path / "runs.json.bak").exists()
