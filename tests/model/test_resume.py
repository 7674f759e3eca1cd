"""Resume: a stopped, interrupted or SIGKILLed run continues from its last checkpoint in the same
record, ends with exactly the planned steps, logs no step twice and misses none, and — the data
order and augmentation seeds restored — ends where an uninterrupted run ends."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from model_support import fast_command, protonet_command
from workbench import jobs, training
from workbench.runfiles import StopFlag
from workbench.nets.weights import load_checkpoint
from workbench.runlog import RunLogError

#: 4 classes × 60 shapes → 168 training images, batch 8: 21 steps an epoch; a random flip so the
#: augmentation seeds must be restored too.
SLOW = dict(epochs=3, batch_size=8, threads=1, transforms=[{"name": "RandomHorizontalFlip"}])
PER_EPOCH = 21


@pytest.fixture(scope="module")
def sixty(tmp_path_factory) -> Path:
    from model_support import make_shapes

    return make_shapes(tmp_path_factory.mktemp("sixty"), per_class=60, size=24)


@pytest.fixture(scope="module")
def reference(sixty, tmp_path_factory):
    """The uninterrupted run every resumed one is compared with."""
    from workbench.runlog import RunLog

    log = RunLog(tmp_path_factory.mktemp("ref") / "runs.db")
    res = training.run_training(fast_command(name="ref", **SLOW), sixty, log=log)
    return log.get(res["run_id"])


def _losses(rec, key="train_loss"):
    return {r["step"]: r[key] for r in rec["metrics"] if key in r}


def _check_steps(rec, planned):
    """Every metric's steps strictly increase, and train_loss has every planned step once."""
    by_key: dict[str, list[int]] = {}
    for r in rec["metrics"]:
        for k in r:
            if k not in ("step", "time", "epoch"):
                by_key.setdefault(k, []).append(r["step"])
    for k, steps in by_key.items():
        assert all(a < b for a, b in zip(steps, steps[1:])), f"{k}: steps not strictly increasing"
    assert by_key["train_loss"] == list(range(planned))
    assert rec["summary"]["steps"] == planned


def stop_at(flag: StopFlag, at: int):
    """A callback setting the run's stop flag before step ``at`` (a stop request, like the Stop button)."""
    import pytorch_lightning as pl

    class StopAt(pl.Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == at:
                flag.set()
    return StopAt()


#: The SIGKILL test's run: 12 epochs (252 steps) with a checkpoint every few steps, so the kill
#: lands mid-epoch however fast the machine. Regression: 3 epochs with a checkpoint every 0.1 s
#: wrote only epoch-end checkpoints on an idle CI machine (an epoch took 40 ms) and ended unkilled.
LONG = {**SLOW, "epochs": 12}


@pytest.mark.slow  # two job processes (torch and Lightning imported twice): 15-30 s on 2 shared cores
def test_a_sigkilled_subprocess_run_resumes_to_the_planned_steps_and_the_same_result(sixty, runlog, tmp_path):
    from workbench.runlog import RunLog

    ref_log = RunLog(tmp_path / "ref.db")
    reference = ref_log.get(training.run_training(fast_command(name="ref-long", **LONG), sixty, log=ref_log)["run_id"])
    cmd = fast_command(name="killed", checkpoint_every_s=0.005, **LONG)  # every few steps, however fast
    job = jobs.start_training(cmd, sixty, log=runlog, mode="subprocess")
    ckpt = Path(runlog.get(job.run_id, metrics=False)["dir"]) / "checkpoints" / "last.ckpt"
    def mid_epoch_step() -> int | None:
        """The committed checkpoint's step when it is inside an epoch with more steps logged after it."""
        try:
            step = int(load_checkpoint(ckpt)["global_step"])
        except Exception:  # (missing, or replaced while being read)
            return None
        ok = step % PER_EPOCH and step < 11 * PER_EPOCH and len(runlog.read_metrics(job.run_id)) > step + 2
        return step if ok else None

    pid, t0, step = job._proc.pid, time.monotonic(), None
    while time.monotonic() - t0 < 120 and not job.done:  # a committed checkpoint inside an epoch, then more steps
        if mid_epoch_step() is not None:
            # Freeze the process and look again: a newer (epoch-end) checkpoint may have been committed
            # between the look and the kill (seen once on a loaded machine: resumed from step 21).
            os.kill(pid, signal.SIGSTOP)
            step = mid_epoch_step()
            if step is not None:
                break
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.02)
    assert not job.done and step is not None, "the run ended before it could be killed"
    job.kill()  # SIGKILL (of the frozen process): no handler, no goodbye
    rec = runlog.get(job.run_id)
    assert rec["status"] == "crashed" and len(_losses(rec)) > step
    again = jobs.resume(job.run_id, log=runlog, mode="subprocess")  # python -m workbench resume RUN
    res = again.wait(180)
    rec = runlog.get(job.run_id)
    assert res is not None and res["status"] == "trained" and rec["id"] == job.run_id, again.error
    assert rec["resumes"][0]["from_status"] == "crashed" and rec["resumes"][0]["from_step"] % PER_EPOCH
    _check_steps(rec, 12 * PER_EPOCH)
    assert rec["summary"]["final_val_accuracy"] == pytest.approx(reference["summary"]["final_val_accuracy"], abs=1e-6)
    ref, got = _losses(reference), _losses(rec)
    assert all(abs(ref[s] - got[s]) < 1e-5 for s in ref), "not the uninterrupted run's losses"


def test_a_stopped_run_resumes_exactly_and_in_the_same_record(sixty, reference, runlog):
    flag = StopFlag()
    res = training.run_training(fast_command(name="stopped", checkpoint_every_s=None, **SLOW), sixty, log=runlog,
                                stop=flag, callbacks=[stop_at(flag, 30)])
    assert res["status"] == "stopped" and res["summary"]["steps"] == 31
    job = jobs.resume(res["run_id"], log=runlog)  # the panels' Resume button
    out = job.wait(120)
    assert out["status"] == "trained" and job.run_id == res["run_id"] and job.job == "resume"
    rec = runlog.get(res["run_id"])
    _check_steps(rec, 3 * PER_EPOCH)
    val = _losses(rec, "val_loss")
    assert 30 in val, "Lightning validates where a stop ends an epoch early (a row of its own, not a repeat)"
    assert _losses(rec) == _losses(reference) and {s: v for s, v in val.items() if s != 30} == _losses(reference,
                                                                                                        "val_loss")
    assert [h["status"] for h in rec["history"]][-3:] == ["stopped", "running", "trained"]


def test_an_epoch_end_checkpoint_resumes_with_the_next_epochs_order(sixty, reference, runlog):
    """Regression: Lightning hands a loader its state only for mid-epoch checkpoints; from one
    written at an epoch's end the next epoch replayed the first epoch's order (train loss at
    step 21: 1.3955 instead of 1.4030)."""
    import pytorch_lightning as pl

    class Interrupt(pl.Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == 30:
                raise KeyboardInterrupt  # no clean checkpoint here: the one from epoch 1's end stays

    res = training.run_training(fast_command(name="epoch-end", checkpoint_every_s=None, **SLOW), sixty, log=runlog,
                                callbacks=[Interrupt()])
    rec = runlog.get(res["run_id"])
    ck = load_checkpoint(Path(rec["dir"]) / "checkpoints" / "last.ckpt")
    assert res["status"] == "stopped" and ck["global_step"] == PER_EPOCH
    training.resume_training(res["run_id"], log=runlog)
    rec = runlog.get(res["run_id"])
    _check_steps(rec, 3 * PER_EPOCH)
    assert _losses(rec) == _losses(reference)


def test_a_few_shot_run_resumes_mid_episode_stream(runlog):
    cmd = protonet_command(name="proto-resume", steps=8, val_every=4, test_episodes=0, checkpoint_every_s=None)
    ref = runlog.get(training.run_training(cmd, log=runlog)["run_id"])
    flag = StopFlag()
    res = training.run_training(cmd, log=runlog, stop=flag, callbacks=[stop_at(flag, 5)])
    assert res["status"] == "stopped" and res["summary"]["steps"] == 6
    out = training.resume_training(res["run_id"], log=runlog)
    rec = runlog.get(res["run_id"])
    assert out["status"] == "trained"
    _check_steps(rec, 8)
    val = _losses(rec, "val_accuracy")
    assert _losses(rec) == _losses(ref) and {s: v for s, v in val.items() if s != 5} == _losses(ref, "val_accuracy")


def test_what_cannot_be_resumed_says_why(shapes_dir, runlog, tmp_path):
    done = training.run_training(fast_command(name="done", epochs=1), shapes_dir, log=runlog)
    with pytest.raises(RunLogError, match="is 'trained'; only stopped or crashed runs can be resumed"):
        jobs.resume(done["run_id"], log=runlog)
    early = runlog.start("early", "baseline", fast_command(), status="queued")
    early.finish("crashed", error="crashed: gone")
    with pytest.raises(RunLogError, match="has no checkpoint to resume from"):
        training.resume_training(early.id, log=runlog)
    import shutil

    moved = shutil.copytree(shapes_dir, tmp_path / "copy")
    flag = StopFlag()
    res = training.run_training(fast_command(name="data", epochs=3), moved, log=runlog, stop=flag,
                                callbacks=[stop_at(flag, 2)])
    next(iter((moved / "circle").iterdir())).unlink()
    with pytest.raises(RunLogError, match="its data changed since it trained"):
        training.resume_training(res["run_id"], log=runlog)


def test_the_resume_command_line(sixty, runlog, capsys):
    from workbench.cli import main

    flag = StopFlag()
    res = training.run_training(fast_command(name="cli", checkpoint_every_s=None, **SLOW), sixty, log=runlog,
                                stop=flag, callbacks=[stop_at(flag, 10)])
    assert main(["resume", "cli", "--db", str(runlog.path), "--no-progress"]) == 0
    assert f"run {res['run_id']} trained: 3 epochs, {3 * PER_EPOCH} steps" in capsys.readouterr().out
    assert main(["resume", "cli", "--db", str(runlog.path)]) == 1
    assert "only stopped or crashed runs can be resumed" in capsys.readouterr().err


def test_a_recreated_sweep_resumes_its_stopped_variant_instead_of_retraining_it(shapes_dir, runlog):
    """Regression: a re-created sweep trained a stopped variant again from scratch, in a new run."""
    import pytorch_lightning as pl

    from workbench.meta.sweep import Sweep

    class StopFile(pl.Callback):  # a stop request after step 4, through the run folder's STOP file
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == 3:
                (Path(trainer.logger.log_dir) / "STOP").touch()

    def stopping_runner(command, data, **kw):
        return jobs.start_training(command, data, callbacks=[StopFile()], **kw)

    base, space = fast_command(name="sw", epochs=2), {"optimizer.params.lr": [0.005]}
    first = Sweep(base, space, data=str(shapes_dir), log=runlog, runner=stopping_runner, describe_task=False).run()
    (v,) = first.variants
    assert v.status == "stopped" and runlog.get(v.run_id, metrics=False)["summary"]["steps"] == 4
    again = Sweep(base, space, data=str(shapes_dir), log=runlog, describe_task=False)
    assert [p.index for p in again.pending()] == [0]
    again.run()
    (w,) = again.variants
    rec = runlog.get(w.run_id)
    assert w.run_id == v.run_id and w.status == "trained" and again.errors == []
    assert rec["resumes"][0]["from_step"] == 4 and rec["summary"]["steps"] == 8  # 2 epochs × 4 batches
    assert [r["step"] for r in rec["metrics"] if "train_loss" in r] == list(range(8))
    assert len(runlog.find(tag=again.tag)) == 1, "no second run for the variant"
