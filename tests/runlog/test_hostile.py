"""Issue 12, run-log items: hostile or damaged files never escape the home, crash the log or lose data."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from workbench import RunLog, RunLogError
from workbench.runlog.log import read_jsonl


def wb(*args, home):
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    env.pop("WORKBENCH_DB", None)
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def old_log_file(path: Path, records: list[dict]) -> None:
    """A run log in the format every pre-SQLite workbench wrote (TinyDB JSON), written by hand."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"_workbench": {"1": {"format": "workbench-runlog", "version": 1}},
                                "runs": {str(i + 1): r for i, r in enumerate(records)}}))


def old_record(rid: str, name: str = "ok", status: str = "completed", **kw) -> dict:
    return {"id": rid, "name": name, "kind": "baseline", "status": status, "config": {}, "summary": {},
            "metrics_summary": {}, "epochs": [], "tags": [], "created_at": "2024-01-01T00:00:00.000+00:00",
            "updated_at": "2024-01-01T00:00:00.000+00:00", "host": "elsewhere", "pid": 1, "history": [], **kw}


def _victim(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    return victim


def test_crafted_id_in_an_old_log_cannot_make_rm_delete_outside_the_home(tmp_path):
    """A record id ``../../victim`` in runs.json made ``runs rm`` rmtree a folder outside the home."""
    home = tmp_path / "home"
    old_log_file(home / "runs.json", [old_record("20240101-000000-aaaaaaaaaa"),
                                      old_record("../../victim", name="evil")])
    victim = _victim(tmp_path)
    for ref in ("../../victim", "evil"):
        out = wb("runs", "rm", ref, "--db", str(home / "runs.json"), home=home)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert (victim / "precious.txt").read_text() == "keep me"


def test_crafted_row_in_the_database_cannot_make_rm_delete_outside_the_home(tmp_path):
    home = tmp_path / "home"
    log = RunLog(home / "runs.db")
    good = log.start("ok", "baseline", {})
    good.finish()
    rec = {**log.get(good.id, metrics=False), "id": "../../victim", "name": "evil"}
    c = sqlite3.connect(home / "runs.db")  # an attacker with write access to the file
    key = c.execute("SELECT frame_cols FROM wb_runs").fetchone()[0]
    c.execute("INSERT INTO wb_runs (id, name, kind, status, created_at, record, frame_cols, frame)"
              " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
              ("../../victim", "evil", "baseline", "completed", rec["created_at"], json.dumps(rec), key, "[]"))
    c.commit()
    c.close()
    victim = _victim(tmp_path)
    out = wb("runs", "rm", "evil", home=home)
    assert out.returncode == 1 and "invalid run id '../../victim'" in out.stderr, out.stderr
    with pytest.raises(RunLogError, match="invalid run id"):
        RunLog(home / "runs.db").delete("evil")
    assert (victim / "precious.txt").read_text() == "keep me"
    assert RunLog(home / "runs.db").get(good.id)["status"] == "completed"
    assert sorted(RunLog(home / "runs.db").to_frame()["name"]) == ["evil", "ok"]  # the bad row cannot break listing


def test_rm_of_a_symlinked_run_folder_removes_the_link_only(runlog, tmp_path):
    victim = _victim(tmp_path)
    run = runlog.start("linked", "baseline", {})
    run.finish()
    shutil.rmtree(run.dir)
    run.dir.symlink_to(victim, target_is_directory=True)
    runlog.delete(run.id)
    assert not run.dir.exists() and not run.dir.is_symlink()
    assert (victim / "precious.txt").read_text() == "keep me"


def test_malformed_records_do_not_make_an_old_log_unopenable(tmp_path):
    """One record with ``pid: "abc"`` or without an id made the whole log unopenable."""
    good = old_record("20240101-000000-aaaaaaaaaa")
    old_log_file(tmp_path / "runs.json", [good, old_record("20240101-000000-bbbbbbbbbb", status="running", pid="abc",
                                                           host="this-host"),
                                          {"name": "no id", "status": "running"}])
    with pytest.warns(UserWarning):
        opened = RunLog(tmp_path / "runs.json")
        assert [r["id"] for r in opened.runs()] == [good["id"]]
        assert opened.get(good["id"])["status"] == "completed"


def test_tampered_active_row_does_not_break_opening(tmp_path):
    log = RunLog(tmp_path / "runs.db")
    run = log.start("x", "baseline", {})
    run._stop.set()
    c = sqlite3.connect(tmp_path / "runs.db")
    rec = json.loads(c.execute("SELECT record FROM wb_runs").fetchone()[0])
    c.execute("UPDATE wb_runs SET record = ?", (json.dumps({**rec, "pid": "abc"}),))
    c.commit()
    c.close()
    assert [r["id"] for r in RunLog(tmp_path / "runs.db").runs()] == [run.id]


def test_torn_last_line_is_not_glued_to_the_next_append(tmp_path):
    """After a torn last line in metrics.jsonl the next append was glued to it and lost."""
    log = RunLog(f"tinydb:{tmp_path / 'runs.json'}")
    run = log.start("torn", "baseline", {})
    run.log_metrics({"loss": 1.0}, step=0)
    run.flush()
    run._close()
    with open(run.dir / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 1, "loss": 0.')  # the writer was killed mid-line
    again = RunLog(f"tinydb:{tmp_path / 'runs.json'}").handle(run.id)
    again.log_metrics({"loss": 0.25}, step=2)
    again.log_metrics({"loss": 0.125}, step=3)
    again.finish("completed")
    assert [r["step"] for r in RunLog(f"tinydb:{tmp_path / 'runs.json'}").get(run.id)["metrics"]] == [0, 2, 3]


def test_read_jsonl_skips_undecodable_and_non_object_lines(tmp_path):
    """A non-UTF-8 byte made reading raise; non-object lines came back as rows."""
    (tmp_path / "m.jsonl").write_bytes(b'{"step": 0}\n\xff\xfe{"step": 1}\n[1, 2]\n"text"\n3\nnull\n{"step": 2}\n{"step"')
    assert read_jsonl(tmp_path / "m.jsonl") == [{"step": 0}, {"step": 2}]


def test_junk_lines_in_metrics_are_skipped(tmp_path):
    """A non-UTF-8 byte made get() raise; non-object lines made metrics_frame raise."""
    log = RunLog(f"tinydb:{tmp_path / 'runs.json'}")
    run = log.start("junk", "baseline", {})
    run.finish("completed")
    (run.dir / "metrics.jsonl").write_bytes(b'{"step": 0, "loss": 1.0}\n\xff\xfe{"step": 1}\n[1, 2]\n"text"\n3\nnull\n'
                                            b'{"step": 2, "loss": 0.5}\n')
    assert [r["step"] for r in read_jsonl(run.dir / "metrics.jsonl")] == [0, 2]
    assert [r["step"] for r in log.get(run.id)["metrics"]] == [0, 2]
    assert log.metrics_frame(run.id)["loss"].tolist() == [1.0, 0.5]


def test_start_leaves_no_folder_when_the_record_write_fails(runlog, backend):
    """start() made the run folder first, so a failed table write left an orphan folder."""
    first = runlog.start("first", "baseline", {})
    first.finish()
    if backend == "postgres":
        with runlog.store.transaction() as c:
            c.execute("DROP TABLE wb_tags")  # the insert's second statement fails: the transaction rolls back
    else:
        runlog.store.path.write_bytes(b"garbage that is not a run log")
    before = sorted(os.listdir(runlog.runs_dir))
    with pytest.raises(RunLogError):
        runlog.start("second", "baseline", {}, tags=["t"])
    assert sorted(os.listdir(runlog.runs_dir)) == before


def _read_only_copy(src: Path) -> Path:
    """A copy of ``src``'s folder that this process cannot write (mode 0444/0555)."""
    dst = Path(tempfile.mkdtemp(prefix="wb-ro-")) / "home"
    shutil.copytree(src, dst)
    for p in [*dst.rglob("*"), dst]:
        p.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH | (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
                                                               if p.is_dir() else 0))
    return dst


def _unprivileged(cmd: list[str]) -> list[str]:
    """As root, drop the capability that ignores file modes, so read-only means read-only."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv(1): cannot make a folder read-only for this test")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]


@pytest.mark.parametrize("name", ["runs.db", "runs.json"])
def test_read_only_log_holding_a_dead_run_can_be_listed(tmp_path, name):
    """Opening always took the lock to mark dead runs crashed, so a read-only log could not be listed."""
    src = tmp_path / "home"
    loc = str(src / name) if name == "runs.db" else f"tinydb:{src / name}"
    code = ("import os; from workbench import RunLog; r = RunLog(%r).start('dead', 'baseline', {});"
            " r.log_metrics({'loss': 1.0}, step=0); r.flush(); print(r.id, flush=True); os._exit(0)" % loc)
    rid = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    ro = _read_only_copy(src)
    try:
        target = str(ro / name)
        lister = textwrap.dedent(f"""
            from workbench import RunLog
            log = RunLog({(target if name == 'runs.db' else 'tinydb:' + target)!r})
            rec = log.get({rid!r})
            print(log.store.read_only, rec["status"], len(rec["metrics"]), len(log.runs()))
        """)
        out = subprocess.run(_unprivileged([sys.executable, "-c", lister]), capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["True", "running", "1", "1"]  # listed as it is; nothing could be written
        env = {**os.environ, "WORKBENCH_HOME": str(ro)}
        if name == "runs.db":
            out = subprocess.run(_unprivileged([sys.executable, "-m", "workbench", "runs", "list", "--db", target]),
                                 capture_output=True, text=True, timeout=60, env=env)
            assert out.returncode == 0 and rid in out.stdout, out.stderr
    finally:
        for p in [ro.parent, *ro.parent.rglob("*")]:
            p.chmod(0o755)
        shutil.rmtree(ro.parent)


@pytest.mark.parametrize("recovers", [False, True])
def test_metrics_the_store_refuses_are_reported_by_finish(runlog, monkeypatch, recovers):
    """Disk full: rows the store refused were dropped silently, then finish() failed and the reason was lost."""
    run = runlog.start("full", "baseline", {})
    run.log_metrics({"loss": 1.0}, step=0)
    run.flush()

    def refuse(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run._writer, "append", refuse)
    if not recovers:  # the final transaction cannot take rows either
        modify = runlog.store.modify

        def full(run_id, fn, metrics=None):
            if metrics:
                raise RunLogError(f"{runlog.store.display}: database or disk is full")
            return modify(run_id, fn)

        monkeypatch.setattr(runlog.store, "modify", full)
    run.flush_every = 0.0
    with pytest.warns(RuntimeWarning, match="could not write metrics"):
        for s in range(1, 50):
            run.log_metrics({"loss": 1.0 / s}, step=s)
    with pytest.raises(RunLogError, match="No space left on device"):
        run.flush()  # an explicit flush tells the caller
    run.finish("completed", summary={"accuracy": 0.5})
    rec = runlog.get(run.id)
    assert rec["status"] == "completed" and rec["summary"] == {"accuracy": 0.5}
    if recovers:  # kept in memory, stored with the final status
        assert rec["error"] is None and [r["step"] for r in rec["metrics"]] == list(range(50))
    else:
        assert rec["error"] == "metrics truncated: OSError: [Errno 28] No space left on device (49 rows not stored)"
        assert [r["step"] for r in rec["metrics"]] == [0]


def test_a_write_cut_short_by_ctrl_c_does_not_block_the_next_one(runlog, backend):
    """Ctrl-C between BEGIN and COMMIT left the connection in a transaction: the final ``stopped`` failed."""
    run = runlog.start("interrupted", "baseline", {})

    def interrupted(doc):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runlog.store.modify(run.id, interrupted)
    if backend == "sqlite":
        runlog.store._writer().execute("BEGIN IMMEDIATE")  # as if the interrupt landed right after BEGIN
    run.finish("stopped")
    assert runlog.get(run.id)["status"] == "stopped"
