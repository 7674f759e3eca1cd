"""Meta-analysis panels driven like a user would: .value = and .click()."""
from __future__ import annotations

import json

import numpy as np

from workbench.widgets.compare import ComparePanel, ImportancePanel
from workbench.widgets.recommend import RecommendPanel


def test_compare_panel_overlays_curves_and_shows_the_diff(runlog, synth):
    cfg = {"kind": "baseline", "batch_size": 32, "optimizer": {"name": "Adam", "params": {"lr": 1e-3}}}
    a = synth.add_run(runlog, "adam", cfg, synth.curve(30, 0.05), 0.8, tags=["sweep:p"], epochs=3)
    b = synth.add_run(runlog, "sgd", {**cfg, "optimizer": {"name": "SGD", "params": {"lr": 1e-3}}},
                      synth.curve(30, 0.01), 0.6, tags=["sweep:p"], epochs=3)
    synth.add_run(runlog, "other", cfg, [1.0, 0.5], 0.5)
    p = ComparePanel(runlog)
    assert len(p.selector.options) == 3
    p.tag_filter.value = "sweep:p"
    assert {v for _, v in p.selector.options} == {a, b}
    p.selector.value = (a,)
    p.compare_button.click()
    assert "two or more" in p.message.value and p.comparison is None
    p.selector.value = (a, b)
    p.compare_button.click()
    assert p.comparison is not None and p.message.value == ""
    fig = p.curves.view.figure
    names = [t.name for t in fig.data]  # run names, not id tails; val_loss dashed beside train_loss
    assert names == ["adam · train_loss", "sgd · train_loss", "adam · val_loss", "sgd · val_loss"], names
    assert fig.data[2].line.dash == "dash" and fig.data[2].mode == "lines+markers"  # 3 points: markers, visible
    assert "optimizer.name" in p.diff.value and "batch_size" not in p.diff.value
    assert "<b>adam</b>" in p.table.value and "train_loss" in p.table.value and a not in p.table.value
    assert p.diff.value.count("background:#ffe9a8") == 1  # only the differing cell, not the first run's
    p.curves.y_scale.value = "log"
    assert fig.layout.yaxis.type == "log"
    p.smooth.value = 0.8
    assert len(fig.data) == 8 and fig.data[0].opacity == 0.3  # raw curves faint behind the smoothed ones
    p.metric.value = "val_loss"
    p.x_axis.value = "epoch"
    assert fig.layout.xaxis.title.text == "epoch" and {t.name for t in fig.data} >= {"adam", "sgd"}
    assert ComparePanel(runlog, runs=[a, b]).comparison is not None
    p.tag_filter.value = "no-such-tag"  # nothing matches: the selection and the results clear, said so
    assert p.selector.options == () and p.selector.value == () and p.comparison is None
    assert "no runs have the tag" in p.message.value and p.table.value == "" and p.diff.value == ""


def test_importance_panel_plots_and_warns(runlog, synth):
    rng = np.random.default_rng(0)
    for i in range(8):
        lr = float(10 ** rng.uniform(-4, -1))
        cfg = {"kind": "baseline", "batch_size": int(rng.choice([16, 32])), "optimizer": {"params": {"lr": lr}}}
        synth.add_run(runlog, f"r{i}", cfg, [2.0, 1.0], 0.9 - abs(np.log10(lr) + 2.5) / 5, tags=["sweep:imp"])
    p = ImportancePanel(runlog)
    p.tag_filter.value = "sweep:nothing"
    p.run_button.click()
    assert "need at least 4" in p.message.value
    p.tag_filter.value = "sweep:imp"
    p.run_button.click()
    assert p.importance is not None and "only 8 runs" in p.message.value
    assert p.plot.figure.data[0].type == "bar" and "optimizer.params.lr" in p.plot.figure.data[0].y
    assert "optimizer.params.lr" in p.table.value and p.plot.widget.layout.display == ""
    p.tag_filter.value = "sweep:nothing"  # no scored runs now: the old chart and table must go
    p.run_button.click()
    assert p.importance is None and p.table.value == "" and p.plot.widget.layout.display == "none"
    assert "0 finished runs" in p.message.value


def test_recommend_panel_recommends_and_rejects_a_bad_edit(runlog, synth, tasks):
    synth.past_runs(runlog, tasks)
    p = RecommendPanel(runlog)
    p.recommend_button.click()
    assert "choose a dataset" in p.evidence.value and p.start_button.disabled
    p.data.value = str(tasks["A2"])
    p.k.value = 2
    p.recommend_button.click()
    assert "A-strokes" in p.evidence.value and not p.start_button.disabled
    assert json.loads(p.command.value)["optimizer"]["params"]["lr"] == 1e-2
    n_runs = len(runlog.runs())
    p.command.value = "{not json"
    p.start_button.click()
    assert "not valid JSON" in p.status.value and p.job is None
    p.command.value = json.dumps({**p.recommendation.command,
                                  "optimizer": {"name": "Adamm", "params": {"lr": 0.01}}})
    p.start_button.click()
    assert "Adamm" in p.status.value and p.job is None
    assert len(runlog.runs()) == n_runs, "a rejected command creates no run"
    good = {**p.recommendation.command, "epochs": 1, "batch_size": 8, "image_size": 28}
    p.command.value = json.dumps(good)
    assert "<b>Recommended</b>" in p.what.value and "optimizer.params.lr" in p.what.value  # what, not only JSON
    p.with_default.value = True
    p.start_button.click()
    tested = p.wait(240)
    assert set(tested) == {"recommended", "default"}, p.status.value
    rec = runlog.get(tested["recommended"])
    assert rec["status"] == "completed" and "recommended" in rec["tags"]  # trained *and* tested
    assert isinstance(rec["summary"]["test_accuracy"], float)
    assert rec["config"]["optimizer"]["params"]["lr"] == 1e-2
    assert runlog.get(tested["default"])["status"] == "completed"
    assert p.status.value.startswith("tested: recommended test accuracy") and "default test accuracy" in p.status.value
    assert not p.start_button.disabled


def test_tune_panel_replays_with_and_without_memory_and_checks_its_inputs(runlog):
    from workbench.widgets.tune import TunePanel

    p = TunePanel(runlog, source="replay (stored curves)", task="objects-d")
    p.budget.value = "ten epochs"
    assert p.start() is False and "budget" in p.status.value and p.start_button.disabled is False
    p.budget.value = "20 trials"  # a replay counts epochs
    assert p.start() is False and "counts epochs" in p.status.value
    p.source.value = "train (real runs)"
    p.data.value = ""
    p.budget.value = "24 epochs"
    assert p.start() is False and "choose a dataset folder" in p.status.value
    assert p.data.layout.display == "" and p.task.layout.display == "none"
    p.source.value = "replay (stored curves)"
    p.budget.value = "60 epochs"
    assert p.start() is True
    results = p.wait(300)
    assert set(results) == {"with memory", "without memory"}, p.status.value
    names = {t.name for t in p.curve.figure.data}
    assert {"with memory", "without memory", "target"} <= names
    assert p.status.value.startswith("done: with memory: best") and "within 1 point" in p.status.value
    assert "<b>Best trial</b>" in p.results.value and not p.start_button.disabled and p.stop_button.disabled
    assert runlog.runs() == []  # a replay trains nothing and writes no run
