"""Runs out to MLflow and TensorBoard, read back with their own readers; the command's extra loggers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_support import fast_command
from workbench import training
from workbench.runfiles import StopFlag


@pytest.fixture(scope="module")
def mlflow_dir(tmp_path_factory) -> Path:
    """One SQLite MLflow store for the module (creating its tables takes MLflow seconds)."""
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, shapes_dir):
    """A parent and a tested child started from it (a lineage tag to export)."""
    from workbench.runlog import RunLog

    log = RunLog(tmp_path_factory.mktemp("exp") / "runs.db")
    parent = training.run_training(fast_command(name="parent", epochs=2), shapes_dir, log=log)["run_id"]
    child = training.run_training(fast_command(name="child", epochs=2, init_from=parent), shapes_dir, log=log)["run_id"]
    training.run_test(child, log=log)
    return log, parent, child


def test_the_mlflow_run_has_every_param_and_metric_row_of_the_record(two_runs, mlflow_dir, tmp_path):
    from mlflow.tracking import MlflowClient

    from workbench.exporters import export_runs
    from workbench.exporters.mlflow import flat_params

    log, parent, child = two_runs
    rows = export_runs(log, "mlflow", str(mlflow_dir))
    assert [r["exported"] for r in rows] == [True, True]
    client = MlflowClient(tracking_uri=f"sqlite:///{mlflow_dir / 'mlflow.db'}")  # MLflow's own reader
    mid = {r["run_id"]: r["mlflow_run_id"] for r in rows}
    rec = log.get(child)
    run = client.get_run(mid[child])
    assert run.data.params == flat_params(rec["config"]) and run.data.params["optimizer.params.lr"] == "0.005"
    assert run.data.params["init_from.run"] == parent and run.data.params["model.layers.0.name"] == "Conv2d"
    keys = {k for r in rec["metrics"] for k in r} - {"step", "time", "epoch"}
    assert keys >= {"train_loss", "val_loss", "val_accuracy"}
    for key in keys:
        want = [(r["step"], r[key]) for r in rec["metrics"] if key in r]
        got = sorted((m.step, m.value) for m in client.get_metric_history(mid[child], key))
        assert got == sorted(want), key
    assert run.data.metrics["summary.test_accuracy"] == pytest.approx(rec["summary"]["test_accuracy"])
    tags = run.data.tags
    assert tags["workbench.run_id"] == child and tags["mlflow.runName"] == "child" and tags["workbench.kind"] == "baseline"
    assert tags["workbench.parent"] == parent and tags["workbench.parent_mlflow_run"] == mid[parent]
    assert run.info.status == "FINISHED" and run.info.end_time >= run.info.start_time
    arts = {a.path for a in client.list_artifacts(mid[child])} | {a.path for a in client.list_artifacts(mid[child],
                                                                                                        "checkpoints")}
    assert {"workbench", "split.json", "test_report.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt"} <= arts
    stored = json.loads(Path(client.download_artifacts(mid[child], "workbench/record.json", str(tmp_path))).read_text())
    assert stored["lineage"]["parent"] == parent and "metrics" not in stored
    again = export_runs(log, "mlflow", str(mlflow_dir))
    assert [r["exported"] for r in again] == [False, False]
    for rid in (parent, child):  # one MLflow run each, still
        assert len(client.search_runs([run.info.experiment_id], f"tags.`workbench.run_id` = '{rid}'")) == 1


def test_tensorboard_event_files_hold_every_scalar_row(two_runs, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from workbench.exporters import export_runs

    log, _, child = two_runs
    (row,) = export_runs(log, "tensorboard", str(tmp_path / "tb"), runs=["child"])
    ea = EventAccumulator(row["dir"])
    ea.Reload()
    rec = log.get(child)
    for key in ("train_loss", "val_accuracy"):
        want = [(r["step"], pytest.approx(r[key])) for r in rec["metrics"] if key in r]
        assert [(e.step, e.value) for e in ea.Scalars(key)] == want
    assert "summary/test_accuracy" in ea.Tags()["scalars"]
    assert export_runs(log, "tensorboard", str(tmp_path / "tb"), runs=["child"])[0]["exported"] is False


def test_the_export_command_line(two_runs, tmp_path, capsys):
    from workbench.cli import main

    log, _, _ = two_runs
    db = str(log.path)
    assert main(["runs", "export", "--db", db, "--to", "tensorboard", str(tmp_path / "tb"), "--name", "child"]) == 0
    assert "exported 1 run to tensorboard" in capsys.readouterr().out
    assert main(["runs", "export", "--db", db, str(tmp_path / "all.jsonl")]) == 0  # the JSON-lines export stays
    assert "exported 2 runs" in capsys.readouterr().out
    assert main(["runs", "export", "--db", db, "--to", "wandb", str(tmp_path)]) == 1
    assert "expected one of mlflow, tensorboard" in capsys.readouterr().err
    assert main(["runs", "export", "--db", db]) == 1
    assert "give FILE (JSON lines) or --to" in capsys.readouterr().err


def test_the_command_runs_extra_loggers_and_a_resume_keeps_the_mlflow_run(shapes_dir, runlog, mlflow_dir,
                                                                           monkeypatch):
    import csv

    import pytorch_lightning as pl
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{mlflow_dir / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    flag = StopFlag()

    class StopAt(pl.Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == 3:
                flag.set()

    cmd = fast_command(name="logged", epochs=2, loggers=["csv", "tensorboard", "mlflow"])
    res = training.run_training(cmd, shapes_dir, log=runlog, stop=flag, callbacks=[StopAt()])
    first = runlog.get(res["run_id"], metrics=False)["loggers"]
    training.resume_training(res["run_id"], log=runlog)
    rec = runlog.get(res["run_id"])
    assert rec["loggers"]["mlflow"]["run_id"] == first["mlflow"]["run_id"], "the resumed run logs into the same run"
    steps = sorted(m.step for m in MlflowClient(uri).get_metric_history(first["mlflow"]["run_id"], "train_loss"))
    assert steps[0] == 0 and steps[-1] == rec["summary"]["steps"] - 1
    assert rec["loggers"]["csv"]["dirs"] == ["csv", "csv/resume-1"]
    parts = [list(csv.DictReader(open(Path(rec["dir"]) / d / "metrics.csv"))) for d in rec["loggers"]["csv"]["dirs"]]
    csv_steps = [int(r["step"]) for rows in parts for r in rows if r.get("train_loss")]
    assert csv_steps[0] == 0 and csv_steps[-1] == rec["summary"]["steps"] - 1 and max(int(r["step"]) for r in parts[0]
                                                                                       if r.get("train_loss")) == 3
    assert any((Path(rec["dir"]) / "tensorboard").glob("events.out.tfevents.*"))


def test_a_missing_package_is_refused_naming_the_extra(monkeypatch, runlog):
    import importlib.util

    from workbench.commands import parse
    from workbench.exporters import export_runs
    from workbench.registry import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"loggers\[1\]: logger 'mlflow' needs the mlflow package: pip install"
                                          r" 'workbench\[ecosystem\]'"):
        parse({"loggers": ["csv", "mlflow"]})
    with pytest.raises(ModuleNotFoundError, match=r"workbench\[ecosystem\]"):
        export_runs(runlog, "mlflow", None)
