"""Thread budgets per job (issue 17): every job runs with an explicit intra-op thread count — the
user's, else an even share of the cores among the running jobs — set for its own thread only, and
never copied by accident from another job."""
from __future__ import annotations

import threading

import pytest
import torch

from training_support import fast_command
from workbench import jobs, runtime


def _in_thread(fn):
    out: dict = {}

    def body() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            out["error"] = exc

    t = threading.Thread(target=body)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def _count_after_another_thread_sets_2(set_count) -> int:
    ready, go, seen = threading.Event(), threading.Event(), {}

    def worker() -> None:
        set_count(1)
        ready.set()
        go.wait()
        torch.rand(200_000).sum()  # the thread's first parallel operator
        seen["n"] = torch.get_num_threads()

    t = threading.Thread(target=worker)
    t.start()
    ready.wait()
    torch.set_num_threads(2)  # another job sets its count meanwhile
    go.set()
    t.join()
    torch.set_num_threads(1)
    return seen["n"]


def test_a_threads_count_survives_another_thread_setting_its_own():
    """torch initialises a thread's count lazily from the count last set *anywhere*: a fresh thread
    that only calls ``torch.set_num_threads(1)`` is switched to another job's 2 at its first
    parallel operator. :func:`runtime.set_thread_count` (used for jobs and pool workers) sticks."""
    assert _count_after_another_thread_sets_2(runtime.set_thread_count) == 1
    naive = _count_after_another_thread_sets_2(torch.set_num_threads)
    assert naive in (1, 2)  # 2 with torch 2.14 (the pitfall); 1 if torch ever initialises eagerly


def test_the_default_budget_is_an_even_share_of_the_cores(monkeypatch):
    monkeypatch.setenv("WORKBENCH_THREADS", "8")
    cores = runtime.cpu_cores()
    assert runtime.threads_for_job(None, running=0) == cores
    assert runtime.threads_for_job(None, running=1) == max(1, cores // 2)
    assert runtime.threads_for_job(None, running=5 * cores) == 1
    assert runtime.threads_for_job(3, running=10) == 3  # the user's count wins
    monkeypatch.setenv("WORKBENCH_THREADS", "1")
    assert runtime.cpu_cores() == 1 and runtime.threads_for_job(None, running=0) == 1
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads = "):
            runtime.threads_for_job(bad)


def test_running_jobs_are_counted_while_they_run():
    base = runtime.running_jobs()
    with runtime.job_threads(1) as n:
        assert n == 1 and runtime.running_jobs() == base + 1 and runtime.requested_threads() == 1
        release = runtime.reserve_threads(2)
        assert runtime.running_jobs() == base + 2
        release()
    assert runtime.running_jobs() == base and runtime.requested_threads() is None


def test_a_default_job_does_not_inherit_the_count_another_job_set(shapes_dir, runlog, monkeypatch):
    """Bug (old ``job_threads``): a job without ``threads`` kept whatever count its new thread
    started with — the count *another* job (or the caller) set last — and recorded it."""
    monkeypatch.delenv("WORKBENCH_THREADS", raising=False)
    if runtime.cpu_cores() < 2:
        pytest.skip("needs 2 cores to tell a share from an inherited count")
    _in_thread(lambda: torch.set_num_threads(1))  # another job's count, set last
    res = _in_thread(lambda: jobs.train(fast_command(epochs=1), data=shapes_dir, log=runlog, progress=False))
    assert runlog.get(res["run_id"])["runtime"] == {"threads": runtime.cpu_cores()}


def test_a_job_started_while_another_runs_gets_its_share_and_records_it(shapes_dir, runlog, monkeypatch):
    monkeypatch.setenv("WORKBENCH_THREADS", "2")
    with runtime.job_slot(2):  # a job already running
        res = jobs.train(fast_command(epochs=1), data=shapes_dir, log=runlog, progress=False)
    assert runlog.get(res["run_id"])["runtime"] == {"threads": 1}
    res = jobs.train(fast_command(epochs=1, threads=2), data=shapes_dir, log=runlog, progress=False)
    assert runlog.get(res["run_id"])["runtime"] == {"threads": 2}  # explicit wins
    assert torch.get_num_threads() == 1  # the caller's count is back


def test_the_callers_count_is_restored_when_a_job_fails():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="boom"):
        with runtime.job_threads(2):
            torch.set_num_threads(3)  # a learner changed it inside
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before


class _FakeProcess:
    """Stands in for the child process: records how it was started, ends when told to."""

    started: list = []

    def __init__(self, args, env=None, **kw) -> None:
        self.args, self.env, self.pid = args, env, 0
        self.returncode = None
        self.ended = threading.Event()
        _FakeProcess.started.append(self)

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        if not self.ended.wait(timeout):
            import subprocess
            raise subprocess.TimeoutExpired(self.args, timeout)
        self.returncode = 0
        return 0

    def kill(self) -> None:
        self.ended.set()


def test_a_subprocess_job_gets_its_share_as_an_explicit_count(shapes_dir, runlog, monkeypatch):
    monkeypatch.setenv("WORKBENCH_THREADS", "2")
    monkeypatch.setattr(jobs.subprocess, "Popen", _FakeProcess)
    _FakeProcess.started.clear()
    base = runtime.running_jobs()
    with runtime.job_slot(2):
        h = jobs.start_training(fast_command(), data=shapes_dir, log=runlog, mode="subprocess")
    proc = _FakeProcess.started[-1]
    i = proc.args.index("--threads")
    assert proc.args[i + 1] == "1" and proc.env["OMP_NUM_THREADS"] == "1"
    assert runtime.running_jobs() == base + 1  # counted while the child runs
    proc.kill()
    h.wait(10)
    assert runtime.running_jobs() == base  # and released when it ends


def test_a_resumed_run_keeps_the_count_it_trained_with(shapes_dir, runlog, monkeypatch):
    """A run continues bit-identically only at its own count: resume uses the recorded one, not
    the share of the cores that happens to be free when it resumes."""
    import pytorch_lightning as pl

    from workbench.training import resume_training

    flag = jobs.StopFlag()

    class StopAt2(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 2:
                flag.set()  # a stop request: the run ends stopped with a checkpoint

    class Probe(pl.Callback):
        seen: set = set()

        def on_train_batch_start(self, *args):
            Probe.seen.add(torch.get_num_threads())

    monkeypatch.setenv("WORKBENCH_THREADS", "2")
    first = jobs.run_training(fast_command(epochs=3), data=shapes_dir, log=runlog, callbacks=[StopAt2()], stop=flag)
    assert first["status"] == "stopped" and runlog.get(first["run_id"])["runtime"] == {"threads": 2}
    with runtime.job_slot(2):  # another job runs now: the share would be 1
        res = resume_training(first["run_id"], log=runlog, callbacks=[Probe()])
    assert res["status"] in ("trained", "completed") and Probe.seen == {2}
    assert runlog.get(first["run_id"])["runtime"] == {"threads": 2}
