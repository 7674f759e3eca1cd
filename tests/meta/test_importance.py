"""What mattered: permutation importance finds the one parameter that matters."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from workbench.meta import TooFewRunsWarning, param_importance


def _sweep(runlog, synth, n, seed=0, matter="optimizer.params.lr"):
    """Runs where only ``lr`` (log-distance from 3e-3) drives the score; bs, optimizer, dropout are noise."""
    rng = np.random.default_rng(seed)
    ids = []
    for i in range(n):
        lr = float(10 ** rng.uniform(-4, -1))
        bs = int(rng.choice([16, 32, 64, 128]))
        opt = str(rng.choice(["Adam", "SGD", "AdamW"]))
        drop = float(rng.choice([0.0, 0.1, 0.3]))
        score = 0.95 - 0.25 * abs(math.log10(lr) + 2.5) + 0.01 * rng.standard_normal()
        cfg = {"kind": "baseline", "data": f"/data/{i}", "seed": i, "batch_size": bs,
               "optimizer": {"name": opt, "params": {"lr": lr}}, "model": {"preset": "small_cnn",
                                                                          "params": {"dropout": drop}}}
        ids.append(synth.add_run(runlog, f"r{i}", cfg, [2.0, 1.0], score))
    return ids


def test_importance_finds_the_parameter_that_matters(runlog, synth):
    ids = _sweep(runlog, synth, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TooFewRunsWarning)  # 40 runs for 4 params: no warning
        imp = param_importance(ids, log=runlog)
    assert imp.top == "optimizer.params.lr"
    assert set(imp.params) == {"optimizer.params.lr", "batch_size", "optimizer.name", "model.params.dropout"}
    assert "seed" not in imp.params and "data" not in imp.params  # not hyperparameters
    assert imp.frame.loc["optimizer.params.lr", "share"] > 0.6
    assert imp.frame["share"].sum() == pytest.approx(1.0)
    me = imp.frame["main_effect"]
    assert me.idxmax() == "optimizer.params.lr" and me["optimizer.params.lr"] > 0.5 and (me <= 1).all()
    assert imp.warning is None and imp.n_runs == 40
    ax = imp.plot()
    assert "40 runs" in ax.get_xlabel()


def test_too_few_runs_warns_honestly(runlog, synth):
    ids = _sweep(runlog, synth, 8)
    with pytest.warns(TooFewRunsWarning, match="only 8 runs for 4 parameters"):
        imp = param_importance(ids, log=runlog)
    assert imp.warning and "noisy" in imp.warning
    assert "⚠" in imp.plot().get_title()
    with pytest.raises(ValueError, match="3 scored runs; need at least 4"):
        param_importance(ids[:3], log=runlog)


def test_unscored_runs_are_left_out_and_params_checked(runlog, synth):
    ids = _sweep(runlog, synth, 12)
    ids.append(synth.add_run(runlog, "failed", {"kind": "baseline", "batch_size": 999}, [2.0, math.nan],
                             status="failed"))
    imp = param_importance(ids, log=runlog, params=["optimizer.params.lr", "batch_size"])  # 12 ≥ 10: no warning
    assert imp.n_runs == 12 and set(imp.params) == {"optimizer.params.lr", "batch_size"}
    with pytest.raises(ValueError, match="'momentum'.*available"):
        param_importance(ids, log=runlog, params=["momentum"])


def test_nothing_varies_is_an_error(runlog, synth):
    cfg = {"kind": "baseline", "batch_size": 32}
    ids = [synth.add_run(runlog, f"r{i}", cfg, [1.0, 0.5], 0.5 + i / 100) for i in range(5)]
    with pytest.raises(ValueError, match="no hyperparameter varies"):
        param_importance(ids, log=runlog)
