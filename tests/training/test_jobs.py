"""Background jobs: returns at once, live metrics, graceful stop, failure, crash, interrupt."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
import signal
import time

import pytest

from training_support import fast_command
from workbench import jobs


def _until(pred, timeout=60.0, every=0.05):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        time.sleep(every)
    return False


def test_background_job_live_metrics_and_test(shapes_dir, runlog):
    import pytorch_lightning  # noqa: F401  - time the call, not the first import of Lightning

    import workbench.data.imagefolder  # noqa: F401
    import workbench.learners.classifier  # noqa: F401

    t0 = time.monotonic()
    job = jobs.start_training(fast_command(name="bg", epochs=20), data=shapes_dir, log=runlog)
    started_in = time.monotonic() - t0
    assert job.status in ("queued", "running") and job.result is None and job.mode == "thread"
    # live: losses appear while the run is still running
    assert _until(lambda: len(job.metrics()) >= 3 or job.done)
    assert job.status == "running", "training finished before live metrics were seen"
    seen_live = len([m for m in job.metrics() if "train_loss" in m])
    res = job.wait(120)
    assert res["status"] == "trained" and job.status == "trained" and res["error"] is None
    assert 0 < seen_live < len([m for m in job.metrics() if "train_loss" in m])
    assert started_in < 10.0  # validation + creating the run; training runs after the return
    t = jobs.start_test("bg", log=runlog)
    r = t.wait(60)
    assert r["status"] == "completed" and r["summary"]["test_accuracy"] > 0.25
    hist = [h["status"] for h in runlog.get(job.run_id)["history"]]
    assert hist == ["queued", "running", "trained", "testing", "completed"]


def test_stop_is_graceful_and_keeps_a_checkpoint(shapes_dir, runlog):
    import pytorch_lightning as pl

    class Count(pl.Callback):  # extra callbacks ride along with a thread job
        batches = 0

        def on_train_batch_end(self, *args):
            Count.batches += 1

    job = jobs.start_training(fast_command(name="long", epochs=100_000), data=shapes_dir, log=runlog,
                              callbacks=[Count()])
    assert _until(lambda: len(job.metrics()) >= 5)
    job.stop()
    res = job.wait(60)
    assert res["status"] == "stopped" and job.status == "stopped"
    rec = runlog.get(job.run_id)
    assert rec["summary"]["stopped"] and rec["summary"]["epochs_completed"] < 100_000
    assert Count.batches == rec["summary"]["steps"] > 0
    from pathlib import Path

    ckpt = Path(rec["dir"]) / rec["artifacts"]["checkpoint"]
    assert ckpt.is_file()
    r = jobs.start_test(job.run_id, log=runlog, limit=4).wait(60)  # a stopped run can still be tested
    assert r["status"] == "completed" and r["summary"]["n_test"] == 4


def test_exception_marks_failed_with_error_text(shapes_dir, runlog, tmp_path):
    data = tmp_path / "broken"
    shutil.copytree(shapes_dir, data)
    for f in sorted((data / "square").iterdir()):
        f.write_bytes(b"not a png")  # every square is broken: the first training batch hits one
    job = jobs.start_training(fast_command(name="broken"), data=data, log=runlog)
    res = job.wait(60)
    assert res["status"] == "failed" and job.status == "failed"
    rec = runlog.get(job.run_id)
    assert "UnidentifiedImageError" in rec["error"] and "square" in rec["error"]
    assert job.error == rec["error"] and isinstance(job.exception, Exception)
    with pytest.raises(Exception, match="only trained, stopped, completed runs can be tested"):
        jobs.start_test(job.run_id, log=runlog)


def test_subprocess_jobs_kill_interrupt_and_stop(shapes_dir, runlog):
    a = jobs.start_training(fast_command(name="to-kill", epochs=100_000), data=shapes_dir, log=runlog, mode="subprocess")
    b = jobs.start_training(fast_command(name="to-interrupt", epochs=100_000), data=shapes_dir, log=runlog,
                            mode="subprocess")
    c = jobs.start_training(fast_command(name="to-stop", epochs=100_000), data=shapes_dir, log=runlog, mode="subprocess")
    assert a.mode == b.mode == "subprocess"
    assert _until(lambda: all(len(j.metrics()) >= 3 for j in (a, b, c)), timeout=120)
    c.stop()  # across processes: a STOP file in the run folder
    assert c.wait(180)["status"] == "stopped" and not (Path(runlog.get(c.run_id)["dir"]) / "STOP").exists()
    a.kill()
    assert a.wait(10)["status"] == "crashed" and "exited with code" in runlog.get(a.run_id)["error"]
    os.kill(b._proc.pid, signal.SIGINT)  # Ctrl-C in a terminal
    res = b.wait(180)  # generous: three training processes share two cores
    assert res is not None, "interrupted job did not end within 180 s"
    assert res["status"] == "stopped", open(os.path.join(runlog.get(b.run_id)["dir"], "job.log")).read()[-2000:]
    rec = runlog.get(b.run_id)
    assert rec["artifacts"].get("checkpoint")


def test_pre_created_run_records_a_late_data_error(runlog, tmp_path):
    """A job's run exists before the job process validates again; if the data vanished meanwhile,
    the run ends failed with the reason (not stuck queued, not crashed)."""
    from workbench.registry import ConfigError

    run = runlog.start("late", "baseline", fast_command(), status="queued")
    with pytest.raises(ConfigError):
        jobs.run_training(fast_command(), data=tmp_path / "gone", log=runlog, run=run.id)
    rec = runlog.get(run.id)
    assert rec["status"] == "failed" and "does not exist" in rec["error"]


def test_ctrl_c_in_a_synchronous_run_stops_it_and_restores_sigint(shapes_dir, runlog):
    """Ctrl-C (KeyboardInterrupt) in a notebook cell running jobs.train: the run ends stopped with a
    checkpoint, and the kernel's SIGINT handler is back (Lightning leaves SIGINT ignored)."""
    import pytorch_lightning as pl

    class CtrlC(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 3:
                raise KeyboardInterrupt

    before = signal.getsignal(signal.SIGINT)
    res = jobs.run_training(fast_command(name="ctrl-c", epochs=50), data=shapes_dir, log=runlog,
                            callbacks=[CtrlC()])
    assert signal.getsignal(signal.SIGINT) is before
    assert res["status"] == "stopped" and res["summary"]["steps"] == 3
    rec = runlog.get(res["run_id"])
    assert rec["status"] == "stopped" and (Path(rec["dir"]) / rec["artifacts"]["checkpoint"]).is_file()
