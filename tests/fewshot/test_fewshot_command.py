"""Few-shot training commands: validation, JSON round-trip, recorded runs, reproducibility,
600-episode-style evaluation with CI, adaptation, stopping, and the jobs/CLI dispatch."""
from __future__ import annotations

import json
import threading

import pytest
import torch

from workbench.fewshot import (FewShotCommand, adapt, evaluate, mean_ci95, parse_command,
                                        train_from_command)

ALPHABETS = ["Latin", "Greek", "Cyrillic", "Armenian"]


def _cmd(kind="maml", **over):
    c = {"kind": kind, "seed": 3, "glyphs": {"alphabets": ALPHABETS, "max_per_alphabet": 12},
         "episodes": {"n_way": 3, "k_shot": 1, "q_query": 2, "meta_batch": 2},
         "model": {"params": {"hidden": 4}}, "steps": 4, "val_every": 2, "val_episodes": 2, "test_episodes": 6,
         "maml": {"inner_steps": 1, "test_inner_steps": 1, "vectorize": "loop"},
         "finetune": {"batch_size": 8, "head_steps": 3}, "split_by": "group",
         "split": {"train": 0.5, "val": 0.25, "test": 0.25}}
    c.update(over)
    return c


def test_command_round_trips_through_json_and_fills_defaults():
    c = FewShotCommand.from_dict({"kind": "protonet"})
    assert c.model["params"]["hidden"] == 64 and c.episodes["n_way"] == 5 and c.data == "glyphs"
    d = json.loads(json.dumps(c.to_dict()))
    assert FewShotCommand.from_dict(d) == c
    c2 = parse_command(json.dumps(_cmd("fomaml")))
    assert c2.first_order and FewShotCommand.from_dict(c2.to_dict()) == c2
    # the shared command's neutral fields are accepted (jobs/CLI may pass a full TrainingCommand dict)
    FewShotCommand.from_dict({"kind": "maml", "labels": None, "transforms": [], "batch_size": 32, "epochs": 5})


@pytest.mark.parametrize("bad, path, words", [
    ({"kind": "mamll"}, "kind", ["maml"]),
    ({"episodes": {"n_way": 1}}, "episodes.n_way", ["≥ 2"]),
    ({"episodes": {"k_shots": 1}}, "episodes.k_shots", ["k_shot"]),
    ({"maml": {"vectorize": "gpu"}}, "maml.vectorize", ["vmap", "loop"]),
    ({"model": {"preset": "resnet18"}}, "model.preset", ["conv4"]),
    ({"optimizer": {"name": "Adamm"}}, "optimizer.name", ["Adam"]),
    ({"optimizer": {"name": "SGD", "params": {"learning_rate": 0.1}}}, "optimizer.params.learning_rate", ["lr"]),
    ({"split": {"train": 0.9, "val": 0.2, "test": 0.1}}, "split", ["add up to 1"]),
    ({"glyphs": {"alphabets": ["Klingon"]}}, "glyphs.alphabets[0]", ["Latin"]),
    ({"transforms": [{"name": "RandomCrop"}]}, "transforms", ["not used"]),
    ({"trainer": {"acclerator": "gpu"}}, "trainer.acclerator", ["accelerator"]),
    ({"kind": "maml", "episodes": {"test_n_way": 20}}, "episodes.test_n_way", ["n_way"]),
    ({"stepz": 10}, "stepz", ["steps"]),
])
def test_bad_commands_name_the_field_value_and_choices(bad, path, words):
    with pytest.raises(ValueError) as e:
        FewShotCommand.from_dict(bad)
    msg = str(e.value)
    assert msg.startswith(path + ":"), msg
    for w in words:
        assert w in msg, msg


def test_a_bad_command_creates_no_run(runlog):
    with pytest.raises(ValueError):
        train_from_command({"kind": "maml", "steps": 0}, log=runlog)
    assert runlog.runs() == []


@pytest.mark.parametrize("kind", ["maml", "protonet", "finetune", "metasgd"])
def test_train_records_a_complete_run(kind, runlog, small_glyphs):
    rid = train_from_command(_cmd(kind), data=small_glyphs, log=runlog)
    rec = runlog.get(rid)
    assert rec["kind"] == kind and rec["status"] == "completed"
    assert rec["config"]["kind"] == kind and rec["config"]["seed"] == 3
    splits = rec["splits"]
    groups = {k: {c.split("/")[0] for c in v} for k, v in splits.items()}
    assert not (groups["train"] & groups["test"])  # by-alphabet split: held-out alphabets
    assert rec["dataset"]["split_counts"]["test"] == len(splits["test"])
    losses = [m["train_loss"] for m in rec["metrics"] if "train_loss" in m]
    assert len(losses) == 4
    if kind != "finetune":
        assert any("val_accuracy" in m for m in rec["metrics"])
    s = rec["summary"]
    assert 0 <= s["test_accuracy"] <= 1 and s["test_ci95"] >= 0 and s["test_episodes"] == 6
    ev = s["fewshot_eval"]["test_3way1shot"]
    assert len(ev["accuracies"]) == 6
    assert ev["mean"] == pytest.approx(mean_ci95(ev["accuracies"])[0], abs=1e-3)
    assert (runlog.run_dir(rid) / rec["artifacts"]["checkpoint"]).is_file()


def test_same_seed_same_tasks_and_losses(runlog, small_glyphs):
    a = train_from_command(_cmd("maml", test_episodes=0), data=small_glyphs, log=runlog)
    b = train_from_command(_cmd("maml", test_episodes=0), data=small_glyphs, log=runlog)
    c = train_from_command(_cmd("maml", test_episodes=0, seed=4), data=small_glyphs, log=runlog)
    la, lb, lc = ([m["train_loss"] for m in runlog.get(r)["metrics"] if "train_loss" in m] for r in (a, b, c))
    assert la == lb and la != lc
    assert runlog.get(a)["splits"] == runlog.get(b)["splits"] != runlog.get(c)["splits"]


def test_evaluate_other_settings_and_adapt(runlog, small_glyphs):
    rid = train_from_command(_cmd("protonet", test_episodes=0), data=small_glyphs, log=runlog)
    assert runlog.get(rid)["status"] == "trained"
    r = evaluate(rid, episodes=8, n_way=4, k_shot=2, q_query=3, log=runlog, data=small_glyphs)
    assert r["n_way"] == 4 and len(r["accuracies"]) == 8
    r2 = evaluate(rid, episodes=8, n_way=4, k_shot=2, q_query=3, log=runlog, data=small_glyphs)
    assert r2["accuracies"] == r["accuracies"]  # same tasks: reproducible from (seed, index)
    rec = runlog.get(rid)
    assert rec["status"] == "completed" and "test_4way2shot" in rec["summary"]["fewshot_eval"]
    # adapt to two classes from the held-out split, given as tensors with string labels
    test_classes = rec["splits"]["test"][:2]
    src = small_glyphs.to_source()
    idx = [src.classes.index(c) for c in test_classes]
    sx = torch.cat([src.get(i, [0]) for i in idx])
    clf = adapt(rid, sx, ["first", "second"], log=runlog)
    assert clf.classes == ["first", "second"]
    assert clf.predict(sx) == ["first", "second"]  # one shot: each support is its own prototype
    assert clf.predict_proba(torch.cat([src.get(i, [5]) for i in idx])).shape == (2, 2)


def test_stop_event_stops_and_keeps_the_weights(runlog, small_glyphs):
    ev = threading.Event()
    ev.set()
    rid = train_from_command(_cmd("protonet", steps=50), data=small_glyphs, log=runlog, stop_event=ev)
    rec = runlog.get(rid)
    assert rec["status"] == "stopped" and rec["summary"]["stop_reason"] == "stopped"
    assert rec["summary"]["steps"] == 1 and (runlog.run_dir(rid) / rec["artifacts"]["checkpoint"]).is_file()


def test_trains_into_a_queued_run(runlog, small_glyphs):
    run = runlog.start("queued-one", "protonet", {}, status="queued")
    rid = train_from_command(_cmd("protonet", test_episodes=0), data=small_glyphs, log=runlog, run=run.id)
    assert rid == run.id and runlog.get(rid)["status"] == "trained"


def test_folder_data_and_the_jobs_dispatch(runlog, tmp_path, small_glyphs):
    """An image folder (like a scraped dataset) trains through the same path, via workbench.jobs."""
    from PIL import Image

    src = small_glyphs.to_source()
    for c in range(8):
        d = tmp_path / "ds" / f"class{c}"
        d.mkdir(parents=True)
        for i in range(4):
            Image.fromarray(src.images[src.by_class[c][i]].numpy()[0]).save(d / f"{i}.png")
    cmd = _cmd("protonet", data=str(tmp_path / "ds"), test_episodes=3, split_by="class",
               episodes={"n_way": 2, "k_shot": 1, "q_query": 2, "meta_batch": 2, "rotate": False})
    try:
        from workbench import jobs
    except ImportError:
        pytest.skip("workbench.jobs not available")
    out = jobs.train(cmd, log=runlog)
    rid = out if isinstance(out, str) else out["run_id"]
    rec = runlog.get(rid)
    assert rec["status"] == "completed" and rec["dataset"]["name"] == "folder"


def test_ci95_is_the_papers_convention():
    import math

    m, ci = mean_ci95([1.0, 0.0] * 300)
    assert m == 0.5 and ci == pytest.approx(1.96 * 0.5004170 / math.sqrt(600), rel=1e-4)
    assert mean_ci95([0.8]) == (0.8, 0.0)


def test_live_curves_collects_history_outside_notebooks(runlog, small_glyphs):
    from workbench.widgets.plots import live_curves

    cb = live_curves(every=2)
    train_from_command(_cmd("protonet", test_episodes=0), data=small_glyphs, log=runlog, callbacks=[cb])
    assert len(cb.history["train_loss"]) == 4 and len(cb.history["val_accuracy"]) >= 1


def test_runs_recorded_before_the_runner_merge_still_load(runlog, small_glyphs):
    """Few-shot runs used to store fewshot.pt ({kind, hparams, state_dict}); they still adapt and test."""
    from workbench.learners.loading import load_learner

    rid = train_from_command(_cmd("protonet", test_episodes=0), data=small_glyphs, log=runlog)
    rec = runlog.get(rid, metrics=False)
    module, _ = load_learner(rec)
    torch.save({"kind": "protonet", "hparams": dict(module.hparams), "state_dict": module.state_dict()},
               runlog.run_dir(rid) / "fewshot.pt")
    runlog.handle(rid).update(artifacts={"weights": "fewshot.pt", "splits": "splits.json"})  # the old record
    old, _ = load_learner(runlog.get(rid, metrics=False))
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), module.state_dict().values()))
    assert len(evaluate(rid, episodes=3, log=runlog, data=small_glyphs)["accuracies"]) == 3
