"""Every kind of command goes one way through the house: the CLI, jobs, a sweep and the train
panel all train it with the one runner (workbench.training) and record the same fields.

Regression tests for the seams issue 10 names (each failed on the code before the redesign):
``train --check`` trained few-shot commands; ``runs list`` never showed a few-shot run's CI;
``jobs.train`` / ``start_training`` dropped name, tags, progress and mode for few-shot kinds;
``start_training`` created a few-shot run before checking that its data exists.
"""
from __future__ import annotations

import json

import pytest

from training_support import fast_command
from workbench import jobs
from workbench.registry import ConfigError

GLYPHS = {"alphabets": ["Latin", "Greek"], "max_per_alphabet": 8}


def few_shot(**over):
    """A ProtoNet command that meta-trains and tests in well under a second."""
    cmd = {"kind": "protonet", "name": "fs", "seed": 1, "glyphs": GLYPHS, "model": {"params": {"hidden": 4}},
           "episodes": {"n_way": 3, "k_shot": 1, "q_query": 2, "meta_batch": 2}, "steps": 4, "val_every": 2,
           "val_episodes": 2, "test_episodes": 4, "split": {"train": 0.5, "val": 0.25, "test": 0.25}}
    cmd.update(over)
    return cmd


@pytest.mark.parametrize("which", ["baseline", "protonet"])
def test_train_check_only_checks_for_every_kind(which, shapes_dir, tmp_path, capsys):
    from workbench.cli import main
    from workbench.runlog import RunLog

    cfg = tmp_path / "cmd.json"
    cfg.write_text(json.dumps(fast_command() if which == "baseline" else few_shot()))
    db = str(tmp_path / "runs.json")
    assert main(["train", "--config", str(cfg), "--data", str(shapes_dir) if which == "baseline" else "glyphs",
                 "--check", "--db", db]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok: {which} command;") and "classes" in out
    assert RunLog(db).runs() == []  # checked, not trained


def test_runs_list_shows_a_few_shot_runs_confidence_interval(runlog, capsys):
    from workbench.cli import main

    res = jobs.train(few_shot(name="with-ci"), log=runlog, progress=False)
    s = runlog.get(res["run_id"], metrics=False)["summary"]
    assert res["status"] == "completed" and s["test_ci95"] >= 0
    assert main(["runs", "list", "--db", str(runlog.path)]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "with-ci" in ln)
    assert f"test_accuracy={s['test_accuracy']:.3f}±{s['test_ci95']:.3f}" in line


def test_jobs_keep_name_tags_and_mode_for_few_shot_kinds(runlog):
    res = jobs.train(few_shot(name=None), name="named", tags=["t1"], log=runlog, progress=False)
    rec = runlog.get(res["run_id"], metrics=False)
    assert (rec["name"], rec["tags"], rec["status"]) == ("named", ["t1"], "completed")
    job = jobs.start_training(few_shot(), name="in-a-process", tags=["t2"], log=runlog, mode="subprocess")
    assert job.mode == "subprocess"
    out = job.wait(240)
    assert out is not None and out["status"] == "completed", (runlog.get(job.run_id)["dir"], out)
    rec = runlog.get(job.run_id, metrics=False)
    assert (rec["name"], rec["tags"]) == ("in-a-process", ["t2"]) and rec["summary"]["test_episodes"] == 4


def test_a_few_shot_command_with_missing_data_creates_no_run(runlog, tmp_path):
    with pytest.raises(ConfigError) as ei:
        jobs.start_training(few_shot(data=str(tmp_path / "nowhere")), log=runlog)
    assert ei.value.path == "data" and "nowhere" in str(ei.value)
    with pytest.raises(ConfigError, match=r"^episodes.k_shot: train split of \d+ classes: k_shot \+ q_query = 30"):
        jobs.start_training(few_shot(episodes={"n_way": 3, "k_shot": 10, "q_query": 20}), log=runlog)
    assert runlog.runs() == []


def test_every_kind_gets_the_same_record_fields(shapes_dir, runlog, capsys):
    from workbench.cli import main

    base = runlog.get(jobs.train(fast_command(epochs=1), data=shapes_dir, log=runlog, progress=False)["run_id"])
    fs = runlog.get(jobs.train(few_shot(), log=runlog, progress=False)["run_id"])
    for rec in (base, fs):
        assert {"config", "dataset", "summary", "artifacts", "runtime", "n_parameters", "env"} <= set(rec)
        assert {"steps", "epochs_completed", "train_seconds", "stopped", "stop_reason", "n_parameters",
                "final_train_loss"} <= set(rec["summary"]), rec["summary"]
        assert {"checkpoint", "last_checkpoint"} <= set(rec["artifacts"]) and rec["env"]["seed"] == rec["config"]["seed"]
        assert rec["dataset"]["fingerprint"] and rec["runtime"]["threads"] >= 1
    assert main(["test", fs["id"], "--limit", "5", "--db", str(runlog.path)]) == 0  # any kind, one command
    out = capsys.readouterr().out
    assert f"run {fs['id']} completed: 3-way 1-shot accuracy" in out and "(95% CI) over 5 episodes" in out
    assert runlog.get(fs["id"], metrics=False)["test_config"]["episodes"] == 5


def test_a_sweep_and_the_train_panel_run_few_shot_commands(runlog):
    from workbench.meta.sweep import Sweep
    from workbench.widgets.train import TrainPanel

    s = Sweep(few_shot(), {"optimizer.params.lr": [1e-3, 1e-2]}, data="glyphs", log=runlog, describe_task=False).run()
    assert s.errors == [] and [v.status for v in s.variants] == ["completed", "completed"]
    p = TrainPanel(command=few_shot(name="from-the-panel"), log=runlog)
    assert "✓" in p.message.value
    p.start_button.click()
    assert p.wait(120)["status"] == "completed" and p.status.value == "completed"
    assert runlog.get(p.job.run_id, metrics=False)["kind"] == "protonet"


def test_train_prints_the_command_schema(capsys):
    from workbench.cli import main

    assert main(["train", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    kinds = {d: schema["$defs"][d]["properties"]["kind"] for d in ("TrainingCommand", "FewShotCommand")}
    assert kinds["TrainingCommand"]["default"] == "baseline" and "protonet" in kinds["FewShotCommand"]["enum"]
    assert "n_way" in schema["$defs"]["Episodes"]["properties"]
