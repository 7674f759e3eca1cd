"""Train and runs panels driven with .value and .click(), no browser."""
from __future__ import annotations

import json

import pytest

from training_support import fast_command
from workbench import jobs
from workbench.widgets.runs import RunsPanel
from workbench.widgets.train import TrainPanel


def test_train_panel_validates_starts_updates_and_finishes(shapes_dir, runlog):
    p = TrainPanel(data=shapes_dir, command=fast_command(name="panel", epochs=4), log=runlog)
    assert p.start_button.description == "Start" and p.stop_button.description == "Stop"
    assert p.stop_button.disabled and "valid" in p.message.value and p.status.value == "idle"
    p.editor.value = "{not json"
    assert "not valid JSON" in p.message.value
    p.editor.value = json.dumps(fast_command(optimizer={"name": "Adma"}))
    assert "optimizer.name" in p.message.value and "Adam" in p.message.value
    p.start_button.click()  # an invalid command does not start
    assert p.job is None and "not started" in p.status.value and runlog.runs() == []
    wrong_head = fast_command()
    wrong_head["model"]["layers"][-1] = {"name": "Linear", "params": {"in_features": "auto", "out_features": 3}}
    p.editor.value = json.dumps(wrong_head)  # checked against the folder's 4 classes, not a placeholder
    assert "model.layers[7]" in p.message.value and "(N, 4)" in p.message.value
    p.editor.value = json.dumps(fast_command(name="panel", epochs=4))
    assert "✓" in p.message.value
    p.start_button.click()
    assert p.job is not None and (p.start_button.disabled or p.job.done)
    assert p.stop_button.disabled is False or p.job.done
    res = p.wait(120)
    assert res["status"] == "trained"
    assert p.status.value == "trained" and p.plot.value[:4] == b"\x89PNG"
    assert "final_val_accuracy" in p.results.value
    assert p.start_button.disabled is False and p.stop_button.disabled is True


def test_train_panel_stop_button(shapes_dir, runlog):
    p = TrainPanel(data=shapes_dir, command=fast_command(name="panel-stop", epochs=500), log=runlog, poll_s=0.1)
    p.start_button.click()
    import time

    t0 = time.monotonic()
    while not any("train_loss" in m for m in p.job.metrics()) and time.monotonic() - t0 < 60:
        time.sleep(0.05)
    p.stop_button.click()
    assert p.wait(60)["status"] == "stopped"
    assert p.status.value == "stopped" and p.plot.value[:4] == b"\x89PNG"


def test_train_panel_reports_bad_data(tmp_path, runlog):
    p = TrainPanel(data=tmp_path / "missing", command=fast_command(), log=runlog)
    p.start_button.click()
    assert p.job is None and "does not exist" in p.message.value and runlog.runs() == []


@pytest.fixture(scope="module")
def two_runs(shapes_dir, tmp_path_factory):
    from workbench.runlog import RunLog

    log = RunLog(tmp_path_factory.mktemp("runs") / "runs.json")
    a = jobs.train(fast_command(name="adam", epochs=3), data=shapes_dir, log=log, progress=False)
    jobs.test(a["run_id"], log=log)
    b = jobs.train(fast_command(name="sgd", epochs=3, optimizer={"name": "SGD", "params": {"lr": 0.05}}),
                   data=shapes_dir, log=log, progress=False)
    failed = log.start("broken", "maml", {}, tags=[])
    failed.finish("failed", error="boom")
    return log, a["run_id"], b["run_id"], failed.id


def test_runs_panel_filters_selects_and_compares(two_runs):
    log, a, b, f = two_runs
    p = RunsPanel(log)
    assert len(p.records) == 3 and "adam" in p.table.value
    p.status_filter.value = "completed"
    assert [r["id"] for r in p.records] == [a]
    p.status_filter.value = "(all)"
    assert set(p.kind_filter.options) == {"(all)", "baseline", "maml"}
    p.kind_filter.value = "maml"
    assert [r["id"] for r in p.records] == [f]
    p.kind_filter.value = "(all)"
    p.name_filter.value = "sg"
    assert [r["id"] for r in p.records] == [b]
    p.name_filter.value = ""
    p.selector.value = (a,)
    assert p.curves.value[:4] == b"\x89PNG" and p.confusion.value[:4] == b"\x89PNG"
    assert "config" in p.details.value and "test_accuracy" in p.details.value
    p.selector.value = (a, b)
    assert p.curves.value[:4] == b"\x89PNG" and p.confusion.value == b"" and "sgd" in p.details.value
    assert p.confusion.layout.display == "none" and p.curves.layout.display == ""  # no broken-image icon
    p.selector.value = (f,)
    assert "boom" in p.details.value
    p.refresh_button.click()
    assert p.selector.value == (f,)
