"""Export / import: JSON lines of ``get(id)`` records, idempotent by run id, between every backend."""
from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys

import pytest

from workbench import RunLog, RunLogError


def _fill(log):
    ids = []
    for i in range(3):
        run = log.start(f"r{i}", ["baseline", "maml", "protonet"][i], {"lr": 10.0 ** -i, "nested": {"k": [1, 2]}},
                        tags=["export", f"t{i}"], seed=i)
        for s in range(30):
            run.log_metrics({"train_loss": 1.0 / (s + 1)}, step=s)
        run.log_epoch(0, {"val_accuracy": 0.5})
        run.finish("completed", summary={"test_accuracy": 0.5 + i / 10, "test_ci95": 0.01, "nan": math.nan})
        ids.append(run.id)
    return ids


def _body(rec):
    rec = dict(rec)
    rec.pop("dir")
    return json.dumps(rec, sort_keys=True, allow_nan=True)


@pytest.mark.parametrize("target", ["sqlite", "tinydb"])
@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_export_then_import_loses_nothing_and_is_idempotent(runlog, tmp_path, target, suffix):
    ids = _fill(runlog)
    path = tmp_path / f"runs{suffix}"
    assert runlog.export(path) == 3
    opener = gzip.open if suffix.endswith(".gz") else open
    with opener(path, "rt") as fh:
        lines = [json.loads(line) for line in fh]
    assert [_body(r) for r in lines] == [_body(runlog.get(rid)) for rid in ids]  # one get(id) per line
    dest = RunLog(tmp_path / "dest.db" if target == "sqlite" else f"tinydb:{tmp_path / 'dest.json'}")
    assert dest.import_(path) == {"added": 3, "unchanged": 0, "replaced": 0}
    assert dest.import_(path) == {"added": 0, "unchanged": 3, "replaced": 0}
    for rid in ids:
        got = dest.get(rid)
        assert _body(got) == _body(runlog.get(rid))
        assert got["dir"] == str(dest.run_dir(rid))  # paths are this log's, never the exporter's
    assert [r["id"] for r in dest.find(kind="maml", tag="export")] == [ids[1]]


def test_export_to_a_server_and_back(pg_url, tmp_path):
    src = RunLog(tmp_path / "laptop.db")
    ids = _fill(src)
    src.export(tmp_path / "a.jsonl")
    team = RunLog(pg_url)
    assert team.import_(tmp_path / "a.jsonl")["added"] == 3
    team.export(tmp_path / "b.jsonl", runs=[ids[0], "r2"])
    back = RunLog(tmp_path / "other.db")
    assert back.import_(tmp_path / "b.jsonl")["added"] == 2
    assert _body(back.get(ids[2])) == _body(src.get(ids[2]))


def _lines(path, recs):
    path.write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in recs))


@pytest.mark.parametrize("bad,needle", [
    ("{not json", ":3: not a JSON record"),
    ("[1, 2]", r":3: not a run record \(a record is an object, not list\)"),
    ('{"name": "x"}', r":3: not a run record \(no id"),
    ("DUP", ":3: run .* appears twice .first on line 1."),
    ("ESCAPE", ":3: not a run record .id '../../x' is not a valid run id"),
    ("METRICS", ":3: not a run record .metrics is not a list of objects"),
])
def test_malformed_line_is_refused_by_number_and_nothing_is_imported(tmp_path, bad, needle):
    src = RunLog(tmp_path / "src.db")
    ids = _fill(src)
    src.export(tmp_path / "good.jsonl")
    recs = [json.loads(line) for line in (tmp_path / "good.jsonl").read_text().splitlines()]
    third = {"DUP": json.dumps(recs[0]), "ESCAPE": json.dumps({**recs[2], "id": "../../x"}),
             "METRICS": json.dumps({**recs[2], "metrics": [1, 2]})}.get(bad, bad)
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([json.dumps(recs[0]), json.dumps(recs[1]), third]) + "\n")
    dest = RunLog(tmp_path / "dest.db")
    with pytest.raises(RunLogError, match=needle):
        dest.import_(path)
    assert dest.runs() == [] and not os.listdir(dest.runs_dir) if dest.runs_dir.exists() else True
    assert ids


def test_conflicting_run_is_refused_unless_overwrite(tmp_path):
    src = RunLog(tmp_path / "src.db")
    ids = _fill(src)
    src.export(tmp_path / "v1.jsonl")
    dest = RunLog(tmp_path / "dest.db")
    dest.import_(tmp_path / "v1.jsonl")
    recs = [json.loads(line) for line in (tmp_path / "v1.jsonl").read_text().splitlines()]
    recs[1]["summary"]["test_accuracy"] = 0.01
    extra = {**recs[2], "id": "20990101-000000-0123456789", "name": "new one"}
    _lines(tmp_path / "v2.jsonl", [recs[1], extra])
    with pytest.raises(RunLogError, match=f"run {ids[1]} .r1. already exists .* different content; nothing was"):
        dest.import_(tmp_path / "v2.jsonl")
    assert len(dest.runs()) == 3 and dest.get(ids[1])["summary"]["test_accuracy"] == 0.6  # untouched, atomic
    assert dest.import_(tmp_path / "v2.jsonl", overwrite=True) == {"added": 1, "unchanged": 0, "replaced": 1}
    assert dest.get(ids[1])["summary"]["test_accuracy"] == 0.01 and len(dest.runs()) == 4


def test_truncated_gzip_is_an_error_not_a_partial_import(tmp_path):
    src = RunLog(tmp_path / "src.db")
    _fill(src)
    src.export(tmp_path / "x.jsonl.gz")
    data = (tmp_path / "x.jsonl.gz").read_bytes()
    (tmp_path / "cut.jsonl.gz").write_bytes(data[: len(data) // 2])
    dest = RunLog(tmp_path / "dest.db")
    with pytest.raises(RunLogError, match="cut.jsonl.gz: cannot read it"):
        dest.import_(tmp_path / "cut.jsonl.gz")
    assert dest.runs() == []


def wb(*args, home):
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    env.pop("WORKBENCH_DB", None)
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_cli_export_import(tmp_path):
    src = RunLog(tmp_path / "a" / "runs.db")
    ids = _fill(src)
    out = wb("runs", "export", str(tmp_path / "maml.jsonl"), "--kind", "maml", home=tmp_path / "a")
    assert out.returncode == 0 and out.stdout.strip() == f"exported 1 run to {tmp_path / 'maml.jsonl'}", out.stderr
    out = wb("runs", "export", str(tmp_path / "all.jsonl.gz"), home=tmp_path / "a")
    assert out.returncode == 0 and "exported 3 runs" in out.stdout
    out = wb("runs", "import", str(tmp_path / "all.jsonl.gz"), "--db", str(tmp_path / "b.db"), home=tmp_path / "b")
    assert out.returncode == 0 and "imported 3 new runs" in out.stdout and "0 already there" in out.stdout
    out = wb("runs", "import", str(tmp_path / "all.jsonl.gz"), "--db", str(tmp_path / "b.db"), home=tmp_path / "b")
    assert "imported 0 new runs" in out.stdout and "3 already there" in out.stdout
    assert sorted(r["id"] for r in RunLog(tmp_path / "b.db").runs()) == sorted(ids)
    (tmp_path / "bad.jsonl").write_text('{"id": 1}\n')
    out = wb("runs", "import", str(tmp_path / "bad.jsonl"), home=tmp_path / "b")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith(f"error: {tmp_path / 'bad.jsonl'}:1: not a run record")


@pytest.mark.parametrize("source", ["fifo", "device", "one_giant_line"])
def test_an_import_file_that_never_ends_or_is_one_giant_line_is_refused(tmp_path, monkeypatch, source):
    """Regression: `runs import /dev/zero` read without limit (it died after 32 s under a 6 GB cap)."""
    import workbench.runlog.export as export

    log = RunLog(tmp_path / "runs.db")
    if source == "fifo":
        path = tmp_path / "pipe.jsonl"
        os.mkfifo(path)  # opening it would block forever: it must be refused by its type first
        needle = "not a regular file"
    elif source == "device":
        path, needle = "/dev/zero", "not a regular file"
    else:
        monkeypatch.setattr(export, "MAX_LINE_BYTES", 1000)
        path, needle = tmp_path / "big.jsonl", "longer than"
        path.write_bytes(b"x" * 5000)
    with pytest.raises(RunLogError, match=needle):
        log.import_(path)
    assert log.find() == []


@pytest.mark.parametrize("where", ["/dev/null", "folder"])
def test_a_run_log_location_that_is_not_a_file_is_refused_unwritten(tmp_path, where):
    """Regression: `--db /dev/null` failed with SQLite's "disk I/O error" and left /dev/null-journal."""
    loc = tmp_path if where == "folder" else where
    before = set(os.listdir(os.path.dirname(os.fspath(loc)) if where != "folder" else tmp_path))
    with pytest.raises(RunLogError, match="folder" if where == "folder" else "not a regular file"):
        RunLog(loc)
    with pytest.raises(RunLogError):
        RunLog(f"tinydb:{loc}")
    after = set(os.listdir(os.path.dirname(os.fspath(loc)) if where != "folder" else tmp_path))
    assert after == before
