"""The corpus's refusals hold on every way in — the CLI, a sweep, the train panel — and edge cases
that are unusual but fine still pass. Process counts: DataLoader workers are capped at the cores
(the record says so); the other counts are refused in the corpus (devices, num_nodes).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest

from command_corpus import BASELINE, TOO_MANY, VALID, b


@pytest.mark.parametrize("case", VALID, ids=[c.id for c in VALID])
def test_unusual_but_valid_commands_still_pass(case, folders):
    from workbench import training

    prepared = training.prepare(case.command, folders[case.base])
    assert type(prepared.command).from_dict(prepared.command.to_dict()) == prepared.command  # round-trips


def test_a_batch_count_stays_a_count():
    """``limit_train_batches: 5`` means five batches; stored as 5.0 it became an invalid fraction."""
    from workbench.commands import parse

    opts = parse(b({"trainer.limit_train_batches": 5, "trainer.limit_val_batches": 0.25})).trainer.trainer_kwargs()
    assert opts["limit_train_batches"] == 5 and type(opts["limit_train_batches"]) is int
    assert opts["limit_val_batches"] == 0.25


@pytest.mark.parametrize("bad, field", [
    ('{"optimizer": {"name": "Adam", "params": {"lr": Infinity}}, "image_size": 16}', "optimizer.params.lr"),
    (json.dumps(b({"trainer.devices": TOO_MANY})), "trainer.devices"),
], ids=["lr-infinity", "devices-more-than-cores"])
def test_cli_refuses_the_command_and_creates_no_run(bad, field, folders, tmp_path):
    from workbench import RunLog

    (tmp_path / "bad.json").write_text(bad, encoding="utf-8")
    db = tmp_path / "runs.json"
    proc = subprocess.run([sys.executable, "-m", "workbench", "train", "--config", str(tmp_path / "bad.json"),
                           "--data", str(folders["baseline"]), "--db", str(db), "--no-progress"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 1, proc.stderr
    assert f"error: {field}:" in proc.stderr and "Traceback" not in proc.stderr
    assert not db.exists() or RunLog(db).runs() == []


def test_sweep_refuses_a_bad_value_and_a_variant_this_machine_cannot_run(folders, tmp_path):
    from workbench import RunLog
    from workbench.meta import sweep

    log = RunLog(tmp_path / "runs.json")
    with pytest.raises(ValueError, match=r"optimizer\.params\.lr"):
        sweep(BASELINE, {"optimizer.params.lr": [0.01, float("inf")]}, data=str(folders["baseline"]), log=log)
    s = sweep(BASELINE, {"trainer.devices": [TOO_MANY]}, data=str(folders["baseline"]), log=log, background=False,
              describe_task=False)
    assert [v.status for v in s.variants] == ["failed"] and "trainer.devices" in s.variants[0].error
    assert log.runs() == []


def test_train_panel_shows_the_field_and_starts_nothing(folders, tmp_path):
    from workbench import RunLog
    from workbench.widgets.train import TrainPanel

    log = RunLog(tmp_path / "runs.json")
    p = TrainPanel(data=folders["baseline"], command=BASELINE, log=log)
    for bad, field in ((b({"seed": 2 ** 40}), "seed"), (b({"trainer.accelerator": "tpu"}), "trainer.accelerator"),
                       (b({"transforms": [{"name": "ToDtype", "params": {"dtype": "float64"}}]}), "transforms")):
        p.editor.value = json.dumps(bad)
        assert field in p.message.value, p.message.value
        p.start_button.click()
        assert p.job is None and "not started" in p.status.value
    p.editor.value = '{"optimizer": {"name": "Adam", "params": {"lr": NaN}}}'
    assert "optimizer.params.lr" in p.message.value
    assert log.runs() == []


def test_num_workers_beyond_the_cores_is_capped_and_the_record_says_so(folders, tmp_path):
    from workbench import RunLog
    from workbench.commands.machine import usable_cpus
    from workbench.training import run_training

    log = RunLog(tmp_path / "runs.json")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = run_training(b({"num_workers": 64}), folders["baseline"], log=log)
    rec = log.get(res["run_id"], metrics=False)
    have = usable_cpus()
    assert res["status"] == "trained" and rec["config"]["num_workers"] == have
    assert rec["adjusted"] == {"num_workers": {"asked": 64, "used": have, "why": f"this machine has {have} usable"
                                                                                 " CPU cores"}}
    assert any("num_workers 64" in str(w.message) for w in caught)


@pytest.mark.parametrize("what", ["dev-zero", "folder", "fifo", "too-big", "missing"])
@pytest.mark.parametrize("reader", ["parse", "Command.load"])
def test_a_command_file_that_is_not_a_small_regular_file_is_refused_unread(what, reader, tmp_path):
    """``train --config /dev/zero`` (or a FIFO nobody writes to) must not read forever or block:
    only a regular file is read, and at most 1 MiB + 1 byte of it (``Command.load`` read it whole)."""
    from workbench.commands import parse
    from workbench.commands.baseline import TrainingCommand
    from workbench.registry import ConfigError

    path = {"dev-zero": "/dev/zero", "folder": str(tmp_path), "fifo": str(tmp_path / "cmd.json"),
            "too-big": str(tmp_path / "big.json"), "missing": str(tmp_path / "gone.json")}[what]
    if what == "fifo":
        os.mkfifo(path)
    if what == "too-big":
        with open(path, "w") as f:
            f.write('{"name": "' + "x" * (2 << 20) + '"}')
    load = parse if reader == "parse" else TrainingCommand.load
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value.problems[0].value) == path or path in str(err.value)
    assert {"dev-zero": "not a regular file", "folder": "not a regular file", "fifo": "not a regular file",
            "too-big": "at most", "missing": "no command file"}[what] in str(err.value)
