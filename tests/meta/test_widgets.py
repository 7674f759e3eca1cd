"""Meta-analysis panels driven like a user would: .value = and .click()."""
from __future__ import annotations

import json

import numpy as np

from workbench.widgets.compare import ComparePanel, ImportancePanel, RecommendPanel


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
    assert p.curves.value[:4] == b"\x89PNG"
    assert "optimizer.name" in p.diff.value and "batch_size" not in p.diff.value
    assert "final.train_loss" in p.table.value
    first = p.curves.value
    p.smooth.value = 0.8
    p.metric.value = "val_loss"
    p.x_axis.value = "epoch"
    assert p.curves.value != first
    assert ComparePanel(runlog, runs=[a, b]).comparison is not None


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
    assert p.plot.value[:4] == b"\x89PNG" and "optimizer.params.lr" in p.table.value


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
    p.start_button.click()
    assert p.job is not None and "started run" in p.status.value
    p.job.wait(120)
    rec = runlog.get(p.job.run_id)
    assert rec["status"] == "trained" and "recommended" in rec["tags"]
    assert rec["config"]["optimizer"]["params"]["lr"] == 1e-2
