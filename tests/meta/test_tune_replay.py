"""The shipped meta-dataset, replayed searches, the warm start and the learned pruner on it."""
from __future__ import annotations

import gzip
import json
import math

import optuna
import pytest

from workbench.meta.pruning import CurveModel, LearnedPruner
from workbench.meta.replay import MetaDataset, replay
from workbench.meta.tune import SHIPPED_METADATASET
from workbench.meta.warmstart import global_prior, warm_start


@pytest.fixture(scope="module")
def md():
    return MetaDataset.load(SHIPPED_METADATASET)


@pytest.fixture(scope="module")
def model(md):
    """The learned pruner's model, trained without the objects-a task (as leave-one-task-out does)."""
    return CurveModel().fit(md.without("objects-a"))


def test_shipped_metadataset_is_16_tasks_by_48_configs_of_real_runs(md):
    assert len(md) >= 12 and {len(t.curves) for t in md.tasks.values()} == {48} and md.epochs == 12
    families = {t.family for t in md.tasks.values()}
    assert len(families) == 4
    with gzip.open(SHIPPED_METADATASET, "rt") as fh:
        rec = json.loads(fh.readline())
    # what the warm start needs without the images, in the run-log export format
    assert rec["kind"] == "baseline" and "metadataset" in rec["tags"] and rec["status"] == "completed"
    assert set(rec["task"]["features"]["scalars"]) and rec["config"]["seed"] == 0
    assert {"val_accuracy", "val_loss"} <= set(rec["epochs"][0]) and len(rec["epochs"]) == 12
    assert any("train_loss" in m for m in rec["metrics"])
    assert 0 <= rec["summary"]["test_accuracy"] <= 1 and rec["durations"]["train_s"] > 0


def test_family_optima_differ(md):
    best = {}
    for t in md.tasks.values():
        top = t.ranked()[0].params
        best.setdefault(t.family, set()).add((top["optimizer.params.lr"], top["transforms"]))
    # no single (lr, augmentation) is the best recipe of every family
    assert len(set.union(*best.values())) >= 3


def test_replay_counts_epochs_and_pruning_spends_less(md):
    task = md.tasks["gratings-b"]
    full = replay(task, optuna.samplers.RandomSampler(seed=1), None, budget_epochs=10 ** 6, max_trials=20)
    pruned = replay(task, optuna.samplers.RandomSampler(seed=1), optuna.pruners.MedianPruner(),
                    budget_epochs=10 ** 6, max_trials=20)
    new = [r for r in full.trials if r["epochs"]]
    assert sum(r["epochs"] for r in new) == full.total_epochs == 12 * len(new)
    assert pruned.total_epochs < full.total_epochs and any(r["pruned"] for r in pruned.trials)
    bests = [b for _, b in full.anytime()]
    assert bests == sorted(bests)  # best-so-far never goes down
    assert full.epochs_to(task.oracle + 1) == math.inf


def test_enqueued_configs_run_first(md):
    task = md.tasks["dots-a"]
    first = task.ranked()[0].params
    r = replay(task, optuna.samplers.RandomSampler(seed=0), None, budget_epochs=12, enqueue=[first])
    assert r.trials[0]["params"] == first and r.epochs_to(task.oracle) == 12


def test_nearest_tasks_are_the_same_family_and_beat_the_global_prior_there(md):
    held = md.tasks["gratings-b"]
    ws = warm_start(held.features, md.without("gratings-b"))
    assert not ws.cold and ws.ood < 2.5
    assert [n["family"] for n in ws.neighbours].count("gratings") >= 2
    assert all(t.user_attrs["prior"] for t in ws.prior_trials) and len(ws.prior_trials) == 3 * 48
    # the family's recipe (no flip: the classes are mirror images) is what it proposes first
    assert ws.enqueue(1)[0]["transforms"] != "flip"
    assert len(global_prior(md.without("gratings-b"))) == 3


def test_unlike_every_past_task_is_a_cold_start(md):
    feats = json.loads(json.dumps(next(iter(md.tasks.values())).features))
    feats["scalars"] = {k: v * 40 + 100 for k, v in feats["scalars"].items()}
    ws = warm_start(feats, md)
    assert ws.cold and "cold start" in ws.reason and ws.enqueue() == []


def test_learned_pruner_is_trained_without_the_held_out_task(md, model):
    assert model.n_tasks == len(md) - 1 and all(0.5 <= t < 1 for t in model.thresholds.values())
    task = md.tasks["objects-a"]
    memory = model.memory_for(task.features, exclude="objects-a")  # what tune() hands its pruner
    assert memory is not None and "objects-a" not in memory.names
    ranked = task.ranked()
    ref = ranked[len(ranked) // 4]  # an incumbent that a quarter of the grid beats

    def stopped(c):
        return any(model.should_stop(c.val_accuracy[:e], ref.value, ref.val_accuracy, 12, c.params, memory)
                   for e in range(1, 12))

    losers = [stopped(c) for c in ranked[len(ranked) // 2:]]
    winners = [stopped(c) for c in ranked[:len(ranked) // 4]]
    # most losing runs are stopped before the end; the calibration allows stopping 30 % of would-be
    # winners on the training tasks, and on this held-out task it stays well below the losers' rate
    assert sum(losers) >= 0.6 * len(losers)
    assert sum(winners) <= 0.5 * len(winners) and sum(winners) / len(winners) < sum(losers) / len(losers)
    assert model.should_stop([0.3, float("nan")], 0.1, [0.1] * 12, 12)  # diverged


def test_learned_pruner_ignores_prior_trials_as_reference(model):
    pruner = LearnedPruner(model, max_epochs=12)
    assert isinstance(pruner, optuna.pruners.BasePruner)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions=dist, value=0.99,
                                              user_attrs={"prior": True}))
    t = study.ask({"x": dist["x"]})
    t.report(0.2, 0)
    t.report(0.25, 1)
    assert not t.should_prune()  # only a prior finished: no own reference yet
