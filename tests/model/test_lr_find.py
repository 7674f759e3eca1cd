"""``"lr": "find"``: Lightning's ``Tuner.lr_find`` picks the rate, the record keeps the curve, the
run trains with the suggestion — as if the command had given that number."""
from __future__ import annotations

from pathlib import Path

import pytest

from model_support import fast_command, protonet_command
from workbench import training
from workbench.nets.weights import load_checkpoint
from workbench.registry import ConfigError

FIND = {"name": "Adam", "params": {"lr": "find"}}


def test_the_finder_answers_and_the_run_trains_with_its_rate(shapes_dir, runlog):
    res = training.run_training(fast_command(name="find", epochs=2, optimizer=FIND,
                                             lr_find={"num_training": 30, "min_lr": 1e-5, "max_lr": 0.5}),
                                shapes_dir, log=runlog)
    rec = runlog.get(res["run_id"], metrics=False)
    found = rec["lr_find"]
    assert rec["config"]["optimizer"]["params"]["lr"] == "find", "the record keeps what was asked"
    assert 1e-5 <= found["suggestion"] <= 0.5 and found["suggestion"] in found["lr"]
    assert 12 <= len(found["lr"]) == len(found["loss"]) <= 30 and found["lr"] == sorted(found["lr"])
    ck = load_checkpoint(Path(rec["dir"]) / rec["artifacts"]["last_checkpoint"])
    assert ck["hyper_parameters"]["command"]["optimizer"]["params"]["lr"] == found["suggestion"]
    assert ck["optimizer_states"][0]["param_groups"][0]["lr"] == found["suggestion"]
    # … and it is the run that command with that number gives (same seed, same data order)
    fixed = training.run_training(fast_command(name="fixed", epochs=2,
                                               optimizer={"name": "Adam", "params": {"lr": found["suggestion"]}}),
                                  shapes_dir, log=runlog)
    a = [r["train_loss"] for r in runlog.get(res["run_id"])["metrics"] if "train_loss" in r]
    b = [r["train_loss"] for r in runlog.get(fixed["run_id"])["metrics"] if "train_loss" in r]
    assert a == b


def test_few_shot_kinds_find_their_rate_too(runlog):
    res = training.run_training(protonet_command(optimizer=FIND, lr_find={"num_training": 16}, test_episodes=0),
                                log=runlog)
    found = runlog.get(res["run_id"], metrics=False)["lr_find"]
    assert res["status"] == "trained" and len(found["loss"]) == 16


def test_find_refuses_what_it_cannot_do_before_a_run_exists(shapes_dir, runlog):
    with pytest.raises(ConfigError, match="lr_find.min_lr: must be below max_lr"):
        training.run_training(fast_command(optimizer=FIND, lr_find={"min_lr": 1.0, "max_lr": 0.1}), shapes_dir,
                              log=runlog)
    ddp = fast_command(optimizer=FIND, trainer={"accelerator": "cpu", "strategy": "ddp", "devices": 2})
    with pytest.raises(ConfigError, match="optimizer.params.lr: 'find' runs Lightning's lr finder in one process"):
        training.run_training(ddp, shapes_dir, log=runlog)
    with pytest.raises(ConfigError, match="optimizer"):
        training.prepare(fast_command(optimizer={"name": "Adam", "params": {"lr": "fast"}}), shapes_dir)
    assert runlog.runs() == []
