"""CLI: ``runs compare`` and ``recommend``."""
from __future__ import annotations

import json

from workbench.cli import main


def test_runs_compare_prints_table_and_diff(runlog, synth, capsys, tmp_path):
    cfg = {"kind": "baseline", "batch_size": 32, "optimizer": {"name": "Adam", "params": {"lr": 1e-3}}}
    a = synth.add_run(runlog, "adam", cfg, [2.0, 1.0, 0.5], 0.8)
    b = synth.add_run(runlog, "sgd", {**cfg, "optimizer": {"name": "SGD", "params": {"lr": 0.1}}}, [2.0, 1.5, 1.4], 0.6)
    png = tmp_path / "curves.png"
    assert main(["runs", "compare", a, "sgd", "--db", str(runlog.path), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "train_loss final" in out and "config keys that differ" in out
    assert "optimizer.name" in out and "batch_size" not in out.split("config keys that differ")[1]
    assert png.stat().st_size > 1000
    assert main(["runs", "compare", a, b, "--db", str(runlog.path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in data["table"]] == [a, b] and set(data["diff"]) == {"optimizer.name",
                                                                                   "optimizer.params.lr"}


def test_runs_compare_errors_are_one_line(runlog, synth, capsys):
    a = synth.add_run(runlog, "only", {"kind": "baseline"}, [1.0], 0.5)
    assert main(["runs", "compare", a, "--db", str(runlog.path)]) == 1
    assert "two or more" in capsys.readouterr().err
    assert main(["runs", "compare", a, "nope", "--db", str(runlog.path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no run with id or name 'nope'") and err.count("\n") == 1


def test_recommend_cli_prints_evidence_and_writes_the_command(runlog, synth, tasks, capsys, tmp_path):
    synth.past_runs(runlog, tasks)
    out_file = tmp_path / "cmd.json"
    assert main(["recommend", "--data", str(tasks["A2"]), "--db", str(runlog.path), "-k", "2",
                 "--out", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "A-strokes: distance" in out and "Recommended command" in out
    assert json.loads(out_file.read_text())["optimizer"]["params"]["lr"] == 1e-2
    assert main(["recommend", "--data", str(tasks["B2"]), "--db", str(runlog.path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["command"]["optimizer"]["params"]["lr"] == 1e-3 and data["neighbours"][0]["task"] == "B-blobs"
    assert main(["recommend", "--data", str(tmp_path / "missing"), "--db", str(runlog.path)]) == 1
    assert "does not exist" in capsys.readouterr().err
