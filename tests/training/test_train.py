"""End to end: train on generated shapes, test, predict — through the API and the CLI."""
from __future__ import annotations

import json
from pathlib import Path

from training_support import fast_command
from workbench import jobs
from workbench.commands import TrainingCommand


def test_train_test_predict_above_chance(shapes_dir, runlog):
    cmd = fast_command(name="e2e")
    res = jobs.train(cmd, data=shapes_dir, log=runlog, progress=False)
    assert res["status"] == "trained"
    rec = runlog.get(res["run_id"])
    assert rec["status"] == "trained" and rec["kind"] == "baseline"
    # the command is stored verbatim (normalised, with the resolved data folder) and reproduces itself
    assert rec["config"] == TrainingCommand.from_dict({**cmd, "data": str(shapes_dir.resolve())}).to_dict()
    assert rec["dataset"]["fingerprint"] and rec["dataset"]["split_counts"]["test"] == 16
    split = json.loads((Path(rec["dir"]) / "split.json").read_text())
    assert len(split["test"]) == 16 and not set(split["test"]) & set(split["train"])
    steps = [m for m in rec["metrics"] if "train_loss" in m]
    assert len(steps) == rec["summary"]["steps"] == 6 * 4  # 64 train images / 16 per batch, every step logged
    assert [e["epoch"] for e in rec["epochs"]] == list(range(6))
    assert all({"val_loss", "val_accuracy"} <= set(e) for e in rec["epochs"])
    assert (Path(rec["dir"]) / rec["artifacts"]["checkpoint"]).is_file()

    out = jobs.test("e2e", log=runlog)
    s = out["summary"]
    assert s["test_accuracy"] > 0.5  # chance is 0.25
    assert s["n_test"] == 16 and sum(map(sum, s["confusion_matrix"])) == 16
    assert s["test_top3_accuracy"] >= s["test_accuracy"]
    assert set(s["per_class_accuracy"]) == {"circle", "cross", "square", "triangle"}
    rec = runlog.get(res["run_id"])
    assert rec["status"] == "completed"
    assert [h["status"] for h in rec["history"]] == ["running", "trained", "testing", "completed"]
    assert rec["test_config"]["source"] == "held-out test split" and rec["test_config"]["n_test"] == 16
    assert rec["summary"]["test_accuracy"] == s["test_accuracy"] and rec["summary"]["epochs_completed"] == 6

    from workbench.learners.classifier import predict

    files = [shapes_dir / f for f in split["test"]]
    preds = predict(res["run_id"], files, log=runlog, top=2)
    truth = [f.split("/")[0] for f in split["test"]]
    hits = sum(p["label"] == t for p, t in zip(preds, truth))
    assert hits / len(truth) == s["test_accuracy"]  # same preprocessing as the test
    assert len(preds[0]["top"]) == 2 and 0 < preds[0]["probability"] <= 1

    again = jobs.test(res["run_id"], log=runlog, limit=5)  # a completed run can be re-tested
    assert again["summary"]["n_test"] == 5


def test_cli_train_and_test(shapes_dir, tmp_path, capsys):
    from workbench.cli import main
    from workbench.runlog import RunLog

    cfg = tmp_path / "cmd.json"
    cfg.write_text(json.dumps(fast_command(name="cli-run", epochs=4,
                                           scheduler={"name": "StepLR", "params": {"step_size": 2, "gamma": 0.5}})))
    db = str(tmp_path / "runs.json")
    assert main(["train", "--config", str(cfg), "--data", str(shapes_dir), "--db", db, "--no-progress",
                 "--tag", "cli"]) == 0
    out = capsys.readouterr().out
    assert "trained: 4 epochs" in out
    assert main(["test", "cli-run", "--db", db, "--limit", "8"]) == 0
    out = capsys.readouterr().out
    assert "test_accuracy" in out and "on 8 images" in out and "triangle" in out
    (rec,) = RunLog(db).find(name="cli-run")
    assert rec["status"] == "completed" and rec["tags"] == ["cli"] and rec["test_config"]["limit"] == 8
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(fast_command(optimizer={"name": "Adamw"})))
    assert main(["train", "--config", str(bad), "--data", str(shapes_dir), "--db", db]) == 1
    err = capsys.readouterr().err
    assert "optimizer.name: unknown optimizer 'Adamw'; did you mean 'AdamW'" in err
    assert len(RunLog(db).runs()) == 1


def test_early_stopping_and_plateau_scheduler(shapes_dir, runlog):
    cmd = fast_command(name="early", epochs=50, early_stopping={"monitor": "val_accuracy", "patience": 1,
                                                                "min_delta": 0.9},
                       scheduler={"name": "ReduceLROnPlateau", "params": {"patience": 0}})
    res = jobs.train(cmd, data=shapes_dir, log=runlog, progress=False)
    s = res["summary"]
    assert res["status"] == "trained" and s["early_stopped"] is True
    assert s["epochs_completed"] == 2  # best set at epoch 0, no 0.9 gain at epoch 1 → stop
    rec = runlog.get(res["run_id"])
    assert rec["config"]["early_stopping"] == {"monitor": "val_accuracy", "patience": 1, "mode": "max",
                                               "min_delta": 0.9}


def test_concurrent_jobs_start_from_the_same_weights(shapes_dir, runlog):
    import torch

    from workbench.learners.classifier import load_classifier

    # a tiny SGD step keeps the trained weights within 1e-4 of the initial ones, so this checks the
    # seeded initialisation (not bitwise-equal training, which float scheduling does not promise)
    cmd = dict(epochs=1, optimizer={"name": "SGD", "params": {"lr": 1e-6}})
    a = jobs.start_training(fast_command(name="twin-a", **cmd), data=shapes_dir, log=runlog)
    b = jobs.start_training(fast_command(name="twin-b", **cmd), data=shapes_dir, log=runlog)
    ra, rb = a.wait(60), b.wait(60)
    assert ra["status"] == rb["status"] == "trained"
    ma, _ = load_classifier(a.run_id, runlog)
    mb, _ = load_classifier(b.run_id, runlog)
    for (k, va), (_, vb) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert torch.allclose(va, vb, atol=1e-4), k
    other = jobs.train(fast_command(name="seed-1", seed=1, **cmd), data=shapes_dir, log=runlog, progress=False)
    mc, _ = load_classifier(other["run_id"], runlog)
    assert not torch.allclose(ma.model[0].weight, mc.model[0].weight, atol=1e-3)  # the seed matters
