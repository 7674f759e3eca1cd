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
    assert not p.start_button.disabled and p.test_button.disabled and p.resume_button.disabled
    p.editor.value = "{not json"
    assert "not valid JSON" in p.message.value
    assert p.start_button.disabled and "not valid JSON" in p.start_button.tooltip  # disabled, with the reason
    p.editor.value = json.dumps(fast_command(optimizer={"name": "Adma"}))
    assert "optimizer.name" in p.message.value and "Adam" in p.message.value and p.start_button.disabled
    p.start_button.click()  # an invalid command does not start
    p.start()
    assert p.job is None and "not started" in p.status.value and runlog.runs() == []
    wrong_head = fast_command()
    wrong_head["model"]["layers"][-1] = {"name": "Linear", "params": {"in_features": "auto", "out_features": 3}}
    p.editor.value = json.dumps(wrong_head)  # checked against the folder's 4 classes, not a placeholder
    assert "model.layers[7]" in p.message.value and "(N, 4)" in p.message.value
    p.editor.value = json.dumps(fast_command(name="panel", epochs=4))
    assert "✓" in p.message.value and not p.start_button.disabled
    assert len(p.plot.data) == 0  # an empty figure (a note in it), never a broken image, before the first run
    p.start_button.click()
    assert p.job is not None and (p.start_button.disabled or p.job.done)
    assert p.stop_button.disabled is False or p.job.done
    res = p.wait(120)
    assert res["status"] == "trained"
    assert p.status.value == "trained" and p.bar.value == 1.0
    names = {t.name for t in p.plot.data}
    assert {"panel · train_loss", "panel · val_loss"} <= names, names  # run names in the legend, val dashed
    assert "final_val_accuracy" in p.results.value and "<table" in p.results.value
    assert p.start_button.disabled is False and p.stop_button.disabled is True
    assert not p.test_button.disabled  # trained, not yet tested
    p.test_button.click()
    res = p.wait(120)
    assert res["status"] == "completed" and p.status.value == "completed"
    assert "test_accuracy" in p.results.value and p.test_button.disabled
    assert p.confusion.widget.layout.display == "" and p.confusion.figure.data[0].type == "heatmap"


def test_train_panel_status_line_shows_progress_eta_and_metrics():
    from workbench.widgets.train import progress, status_text

    rows = [{"step": i, "epoch": i // 10, "train_loss": 1.0 / (i + 1)} for i in range(25)]
    epochs = [{"epoch": 0, "val_loss": 0.5, "val_accuracy": 0.75}, {"epoch": 1, "val_loss": 0.4, "val_accuracy": 0.8}]
    p = progress(rows, epochs, planned_epochs=8, planned_steps=None, elapsed_s=25.0)
    assert p["fraction"] == pytest.approx(2.5 / 8) and p["eta_s"] == pytest.approx(25.0 * (1 - 2.5 / 8) / (2.5 / 8))
    text = status_text("running", p)
    assert text.startswith("running · epoch 3/8 · step 25 · ETA 0:55")
    assert "train_loss 0.04" in text and "val_loss 0.4" in text and "val_accuracy 0.8" in text
    few = progress([{"step": 49, "train_loss": 1.2}], [], planned_epochs=None, planned_steps=200, elapsed_s=10.0)
    assert few["fraction"] == 0.25 and "step 50/200" in status_text("running", few)


def test_train_panel_stop_button(shapes_dir, runlog):
    p = TrainPanel(data=shapes_dir, command=fast_command(name="panel-stop", epochs=500), log=runlog, poll_s=0.1)
    p.start_button.click()
    import time

    t0 = time.monotonic()
    while not any("train_loss" in m for m in p.job.metrics()) and time.monotonic() - t0 < 60:
        time.sleep(0.05)
    p.stop_button.click()
    assert p.wait(60)["status"] == "stopped"
    assert p.status.value == "stopped" and len(p.plot.data) >= 1
    assert not p.test_button.disabled  # a stopped run can be tested


def test_train_panel_resume_button_continues_a_stopped_run(shapes_dir, runlog):
    import time

    p = TrainPanel(data=shapes_dir, command=fast_command(name="panel-resume", epochs=4), log=runlog, poll_s=0.1)
    assert p.resume_button.disabled
    p.start_button.click()
    t0 = time.monotonic()
    while not any("train_loss" in m for m in p.job.metrics()) and time.monotonic() - t0 < 60:
        time.sleep(0.05)
    p.stop_button.click()
    assert p.wait(60)["status"] == "stopped" and not p.resume_button.disabled
    rid = p.job.run_id
    p.resume_button.click()
    assert p.job.run_id == rid and p.job.job == "resume"  # the same record goes on
    assert p.wait(120)["status"] == "trained" and p.status.value == "trained"
    rec = runlog.get(rid)
    assert rec["summary"]["epochs_completed"] == 4 and rec.get("resumes") and p.resume_button.disabled
    job = p.job
    assert p.resume() is None and p.job is job and "✗" in p.message.value  # a trained run: refused, said


def test_train_panel_reports_bad_data(tmp_path, runlog):
    p = TrainPanel(data=tmp_path / "missing", command=fast_command(), log=runlog)
    # said before Start, not "✓ command is valid" and then "not started"
    assert "does not exist" in p.message.value and "✓" not in p.message.value and p.start_button.disabled
    p.start()
    assert p.job is None and "does not exist" in p.message.value and runlog.runs() == []
    p.data.value = ""
    assert "choose an image folder" in p.message.value and p.start_button.disabled


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
    assert {t.name for t in p.curves.view.figure.data} >= {"adam · train_loss"}
    assert p.confusion.figure.data[0].type == "heatmap" and p.confusion.widget.layout.display == ""
    # readable: summary and config as tables, defaults folded away, no JSON dump
    assert "<b>Summary</b>" in p.details.value and "test_accuracy" in p.details.value
    assert "<code>optimizer.params.lr</code>" in p.details.value and "keys at their default" in p.details.value
    assert p.details.value.count("\n") < 5
    p.selector.value = (a, b)
    assert {t.name for t in p.curves.view.figure.data} >= {"adam · train_loss", "sgd · train_loss"}
    assert p.confusion.widget.layout.display == "none" and "sgd" in p.details.value
    p.selector.value = (f,)
    assert "boom" in p.details.value and p.curves.widget.layout.display == "none"
    p.refresh_button.click()
    assert p.selector.value == (f,)
    p.name_filter.value = "no such run"  # the selection goes, and the detail view clears with it
    assert p.selector.value == () and p.records == [] and "no runs match" in p.table.value
    assert "select a run" in p.details.value and p.curves.widget.layout.display == "none"


def test_runs_panel_shows_a_scrape_runs_thumbnails(tmp_path):
    from PIL import Image

    from workbench.runlog import RunLog

    root = tmp_path / "ds"
    rows = []
    for label, c in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (root / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (32, 32), c).save(root / label / f"{i:016x}.jpg")
            rows.append({"label": label, "folder": label, "path": f"{label}/{i:016x}.jpg", "url": f"http://x/{label}{i}",
                         "sha256": f"{label}{i}"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    log = RunLog(tmp_path / "runs.json")
    run = log.start("foxes", "scrape", {"queries": ["red", "blue"], "out": str(root)}, dataset={"root": str(root)})
    run.finish("completed", summary={"n_images": 6})
    p = RunsPanel(log)
    p.select([run.id])
    assert p.preview.value[:4] == b"\x89PNG" and p.preview.layout.display == ""
    assert p.curves.widget.layout.display == "none"  # no empty loss plot for a run that logged none
    assert "n_images" in p.details.value
