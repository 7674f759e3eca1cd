"""Compare: results table, config diff (only keys that differ), curves, smoothing."""
from __future__ import annotations

import math

import matplotlib
import pytest

matplotlib.use("Agg")

from workbench.meta import compare, config_diff, curves_frame, runs_table  # noqa: E402
from workbench.meta.compare import smooth_ema  # noqa: E402


def _cfg(lr, bs=32, opt="Adam"):
    return {"kind": "baseline", "data": "/d", "optimizer": {"name": opt, "params": {"lr": lr}}, "batch_size": bs,
            "epochs": 3, "model": {"preset": "small_cnn", "params": {}}}


def test_table_has_final_best_wall_time_and_score(runlog, synth):
    a = synth.add_run(runlog, "a", _cfg(1e-3), [2.0, 1.5, 1.0, 1.2], 0.8, epochs=2)
    b = synth.add_run(runlog, "b", _cfg(1e-2), [2.0, 3.0, math.nan, math.nan], 0.1)
    t = runs_table([a, b], log=runlog)
    assert list(t.index) == [a, b]
    assert t.loc[a, "final.train_loss"] == pytest.approx(1.2)
    assert t.loc[a, "best.train_loss"] == pytest.approx(1.0)  # min for a loss
    assert t.loc[a, "steps"] == 4 and t.loc[a, "epochs"] == 2
    assert t.loc[a, "wall_s"] >= 0
    assert t.loc[a, "score"] == pytest.approx(0.8)
    assert not t.loc[a, "diverged"] and t.loc[b, "diverged"]
    assert t.loc[b, "best.train_loss"] == pytest.approx(2.0)  # NaN never counts as best


def test_config_diff_shows_only_differing_keys(runlog, synth):
    a = synth.add_run(runlog, "a", _cfg(1e-3, 32), [1.0, 0.5], 0.8)
    b = synth.add_run(runlog, "b", _cfg(1e-2, 32), [1.0, 0.6], 0.7)
    c = synth.add_run(runlog, "c", _cfg(1e-2, 64, "SGD"), [1.0, 0.7], 0.6)
    d = config_diff([a, b, c], log=runlog)
    assert set(d.index) == {"optimizer.params.lr", "batch_size", "optimizer.name"}
    assert list(d.columns) == ["a", "b", "c"]
    assert d.loc["optimizer.name", "c"] == "SGD"
    # a key only one run has is a difference too
    e = synth.add_run(runlog, "e", {**_cfg(1e-3), "scheduler": {"name": "StepLR"}}, [1.0, 0.5], 0.8)
    d2 = config_diff([a, e], log=runlog)
    assert list(d2.index) == ["scheduler.name"] and d2.loc["scheduler.name", "a"] == "<missing>"
    assert config_diff([a, a], log=runlog).empty


def test_compare_object_curves_and_labels(runlog, synth):
    a = synth.add_run(runlog, "same", _cfg(1e-3), synth.curve(40, 0.01, 0), 0.8, epochs=4)
    b = synth.add_run(runlog, "same", _cfg(1e-2), synth.curve(40, 0.1, 1), 0.9, epochs=4)
    c = compare([a, b], log=runlog)
    assert c.best() == b
    assert "train_loss" in c.metrics and "val_loss" in c.metrics
    labels = list(c.table["label"])
    assert len(set(labels)) == 2, "repeated names get unique labels"
    df = curves_frame([a, b], "train_loss", smooth=0.8, log=runlog)
    assert len(df) == 80 and set(df["run"]) == {a, b}
    one = df[df["run"] == a]
    assert one["smoothed"].diff().abs().mean() < one["value"].diff().abs().mean()  # smoothing smooths
    ep = curves_frame([a], "val_loss", x="epoch", log=runlog)
    assert list(ep["epoch"]) == [0, 1, 2, 3]
    ax = c.plot("train_loss", smooth=0.5)
    assert len(ax.get_lines()) == 4  # smoothed + faint raw per run
    with pytest.raises(ValueError, match="not logged.*available"):
        c.plot("val_accuracy")
    with pytest.raises(ValueError, match="x = 'wall'"):
        curves_frame([a], x="wall", log=runlog)


def test_smooth_ema_debiased_and_validated():
    assert smooth_ema([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])  # no pull toward 0
    out = smooth_ema([1.0, math.nan, 3.0], 0.5)
    assert math.isnan(out[1]) and 1.0 < out[2] < 3.0
    with pytest.raises(ValueError, match="smooth = 1"):
        smooth_ema([1.0], 1)


def test_compare_by_name_and_empty(runlog, synth):
    synth.add_run(runlog, "alpha", _cfg(1e-3), [1.0, 0.9], 0.5)
    c = compare(["alpha"], log=runlog)
    assert c.table["label"].iloc[0] == "alpha"
    with pytest.raises(ValueError, match="no runs"):
        compare([], log=runlog)
