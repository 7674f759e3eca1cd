"""``python -m workbench runs …`` against real run logs."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from workbench import RunLog


def wb(*args, home=None, check=False):
    env = dict(os.environ)
    if home is not None:
        env["WORKBENCH_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, env=env,
                          timeout=120, check=check)


def test_runs_list_json_on_new_empty_log(tmp_path):
    out = wb("runs", "list", "--json", home=tmp_path / "fresh")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_runs_list_show_rm(tmp_path):
    log = RunLog(tmp_path / "runs.json")
    a = log.start("alpha", "baseline", {"lr": 0.1})
    a.log_metrics({"train_loss": 0.5}, step=0)
    a.finish("completed", summary={"accuracy": 0.875})
    b = log.start("beta", "maml", {})
    b.finish("failed", error="boom")
    db = str(log.path)
    out = wb("runs", "list", "--db", db, check=True)
    assert "alpha" in out.stdout and "beta" in out.stdout and "accuracy=0.875" in out.stdout
    out = wb("runs", "list", "--db", db, "--status", "failed", "--json", check=True)
    assert [r["name"] for r in json.loads(out.stdout)] == ["beta"]
    out = wb("runs", "show", a.id, "--db", db, "--json", check=True)
    rec = json.loads(out.stdout)
    assert rec["config"] == {"lr": 0.1} and rec["metrics"][0]["train_loss"] == 0.5
    out = wb("runs", "show", "alpha", "--db", db, check=True)
    assert a.id in out.stdout and "completed" in out.stdout
    out = wb("runs", "rm", b.id, "--db", db, "--yes", check=True)
    assert [r["name"] for r in RunLog(log.path).runs()] == ["alpha"]


def test_errors_are_one_line_not_tracebacks(tmp_path):
    out = wb("runs", "show", "nope", home=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip().startswith("error: no run with id or name 'nope'")
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = wb("runs", "list", "--db", str(bad))
    assert out.returncode == 1 and "corrupt or truncated" in out.stderr and "Traceback" not in out.stderr
    assert bad.read_text() == "{not json"
