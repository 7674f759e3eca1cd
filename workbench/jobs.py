"""Background jobs: start a training or test run, keep working, watch it, stop it.

    job = start_training({"model": "small_cnn", "epochs": 3}, data="~/data/shapes")
    job.status, job.metrics()[-1]      # live
    job.stop(); job.wait()              # graceful: run ends "stopped", checkpoint kept
    test = start_test(job.run_id); test.wait()

This module only *schedules*: what a job does is :func:`workbench.training.run_training` /
:func:`~workbench.training.run_test`, for every kind of command alike (re-exported here).

**Thread or subprocess?** Jobs run in a *thread* of the calling process by default: they start
at once (a subprocess pays 3–5 s to import torch and Lightning again), share the kernel's
decoded-image cache and in-memory data, and report live metrics without files in between. The
kernel stays responsive because torch releases the GIL inside its ops (tests/training/test_kernel.py
checks this in a real ipykernel), and jobs in threads train reproducibly side by side (their
randomness is their own: :mod:`workbench.runtime`). Panels never print from the job thread —
since ipykernel 7 routes a thread's output by the cell that started it — they update widget
values, which reach the front end whatever cell is running. Commands asking for several
processes (``strategy`` ``ddp*``, ``devices`` > 1 or ``num_nodes`` > 1) run as a *subprocess*
(``python -m workbench train --run-id …``), because Lightning's DDP launcher re-executes the
script, which a kernel cannot be; ``mode="subprocess"`` forces that for isolation.

Statuses in the run log: ``queued → running → trained`` (or ``stopped`` / ``failed``), then for a
test ``testing → completed``. A process that dies leaves ``crashed``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from . import runtime
from .commands import Command, command_dict
from .registry import ConfigError
from .runlog import ACTIVE, RunLog, RunLogError
from .training import (RESUMABLE, STOP_FILE, TESTABLE, StopFlag, create_run, prepare, resume_checkpoint,  # noqa: F401
                       resume_training, run_test, run_training, test, train)

__all__ = ["start_training", "start_test", "resume", "wait_all", "JobHandle", "run_training", "run_test",
           "resume_training", "train", "test", "prepare", "StopFlag", "command_dict", "TESTABLE", "RESUMABLE",
           "STOP_FILE", "MODES"]

MODES = ("auto", "thread", "subprocess")


class JobHandle:
    """A training or test job running in the background (thread or subprocess).

    ``status`` is the run's status in the run log; ``metrics()`` its logged rows so far;
    ``stop()`` asks for a graceful stop; ``wait()`` blocks and returns ``result``.
    """

    def __init__(self, run_id: str, log: RunLog, job: str, mode: str, stop_flag: StopFlag) -> None:
        self.run_id = run_id
        self.log = log
        self.job = job
        self.mode = mode
        self._stop = stop_flag
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen | None = None
        self._done = threading.Event()
        self._result: dict[str, Any] | None = None
        self.error: str | None = None
        self.exception: BaseException | None = None
        self._listeners: list[Callable[["JobHandle"], None]] = []

    # state
    @property
    def status(self) -> str:
        """The run's status in the run log (``queued``, ``running``, ``trained`` …)."""
        return self.log.get(self.run_id, metrics=False)["status"]

    @property
    def done(self) -> bool:
        if self._proc is not None and not self._done.is_set() and self._proc.poll() is not None:
            self._finish_subprocess()
        return self._done.is_set()

    @property
    def result(self) -> dict[str, Any] | None:
        """``{"run_id", "status", "summary", "error"}`` once the job has ended, else None."""
        return self._result if self.done else None

    @property
    def record(self) -> dict[str, Any]:
        return self.log.get(self.run_id)

    def metrics(self) -> list[dict[str, Any]]:
        """Every metric row logged so far (live: flushed at least twice a second)."""
        return self.log.get(self.run_id)["metrics"]  # get() flushes this process's handle first

    def epochs(self) -> list[dict[str, Any]]:
        """End-of-epoch rows (``val_loss``, ``val_accuracy``) so far."""
        return list(self.log.get(self.run_id, metrics=False).get("epochs") or [])

    # control
    def stop(self) -> "JobHandle":
        """Ask the job to stop after the current batch; the run ends ``stopped`` with a checkpoint."""
        self._stop.set()
        return self

    def wait(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Block until the job ends (or ``timeout`` seconds pass); return ``result`` (None on timeout)."""
        if self._thread is not None:
            self._thread.join(timeout)
        elif self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
            self._finish_subprocess()
        return self.result

    def kill(self) -> None:
        """Kill a subprocess job at once (no graceful stop: the run ends ``crashed``)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
            self._finish_subprocess()

    def _finish(self, result: dict[str, Any]) -> None:
        self._result = result
        self.error = result.get("error")
        self._done.set()
        for fn in list(self._listeners):
            try:
                fn(self)
            except Exception:
                pass

    def _finish_subprocess(self) -> None:
        if self._done.is_set() or self._proc is None:
            return
        rc = self._proc.returncode
        rec = self.log.get(self.run_id, metrics=False)
        if rec["status"] in ACTIVE:
            try:
                self.log.set_status(self.run_id, "crashed", error=f"crashed: job process exited with code {rc};"
                                    f" see {Path(rec['dir']) / 'job.log'}")
            except RunLogError:
                pass
            rec = self.log.get(self.run_id, metrics=False)
        self._finish({"run_id": self.run_id, "status": rec["status"], "summary": rec.get("summary") or {},
                      "error": rec.get("error"), "returncode": rc})

    def on_done(self, fn: Callable[["JobHandle"], None]) -> None:
        """Call ``fn(handle)`` when the job ends (from the job's thread)."""
        self._listeners.append(fn)
        if self._done.is_set():
            fn(self)

    def __repr__(self) -> str:
        try:
            st = self.status
        except Exception:
            st = "?"
        return f"JobHandle({self.job} run={self.run_id!r} mode={self.mode} status={st!r})"


def _run_thread(handle: JobHandle, body: Callable[[], dict[str, Any]]) -> None:
    try:
        res = body()
    except BaseException as exc:  # noqa: BLE001 - the job records every failure
        handle.exception = exc
        handle.error = runtime.error_text(exc)
        try:
            if handle.log.get(handle.run_id, metrics=False)["status"] in ACTIVE:
                handle.log.set_status(handle.run_id, "failed", error=handle.error)
            status = handle.log.get(handle.run_id, metrics=False)["status"]
        except Exception:
            status = "failed"
        handle._finish({"run_id": handle.run_id, "status": status, "summary": {}, "error": handle.error,
                        "traceback": traceback.format_exc()})
        return
    handle._finish({"summary": {}, "error": None, **res, "run_id": handle.run_id})


def _spawn(args: list[str], run_dir: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    run_dir.mkdir(parents=True, exist_ok=True)
    out = open(run_dir / "job.log", "ab")
    # start_new_session: Ctrl-C in the kernel must not reach the job; it has its own stop file.
    return subprocess.Popen([sys.executable, "-m", "workbench", *args], stdout=out, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)


def _thread(h: JobHandle, body: Callable[[], dict[str, Any]], what: str) -> JobHandle:
    h._thread = threading.Thread(target=_run_thread, name=f"workbench-{what}-{h.run_id}", daemon=True, args=(h, body))
    h._thread.start()
    return h


def start_training(command: Command | Mapping[str, Any] | str | Path, data: Any = None, *,
                   name: str | None = None, tags: Iterable[str] = (), log: RunLog | None = None,
                   mode: str = "auto", callbacks: Iterable[Any] = (), threads: int | None = None) -> JobHandle:
    """Check a command of any kind against its data, create its run and train it in the background.

    Returns at once. A command that fails its checks raises :class:`~workbench.registry.ConfigError`
    and creates no run. ``mode``: ``"auto"`` (thread, or subprocess for multi-process
    strategies), ``"thread"`` or ``"subprocess"``. ``callbacks``: extra Lightning callbacks
    (thread jobs only: a subprocess cannot receive Python objects). ``threads``: the job's
    intra-op thread count (default: the command's ``threads``).
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    callbacks = list(callbacks)
    runtime.threads_for_job(threads)
    prepared = prepare(command, data)
    cmd = prepared.command
    if mode == "auto":
        mode = "subprocess" if cmd.needs_processes() else "thread"
    if mode == "subprocess":
        if callbacks:
            raise ValueError("callbacks need a thread job; this command runs as a subprocess"
                             " (multi-process strategy or mode='subprocess')")
        if data is not None and not isinstance(data, (str, Path)):
            raise ConfigError("data", f"in-memory data ({type(data).__name__}) needs a thread job; pass a folder",
                              type(data).__name__)
    log = log or RunLog()
    run = create_run(log, prepared, name=name, tags=tags, status="queued")
    flag = StopFlag(run.dir)
    h = JobHandle(run.id, log, "train", mode, flag)
    if mode == "thread":
        return _thread(h, lambda: run_training(cmd, log=log, run=run, stop=flag, prepared=prepared,
                                               callbacks=callbacks, threads=threads), "train")
    cfg_path = run.dir / "command.json"
    cfg_path.write_text(json.dumps(cmd.to_dict(), indent=1), encoding="utf-8")
    args = ["train", "--config", str(cfg_path), "--run-id", run.id, "--db", str(log.path), "--no-progress"]
    h._proc = _spawn(args + (["--threads", str(threads)] if threads is not None else []), run.dir)
    _watch(h)
    return h


def _watch(h: JobHandle) -> None:
    """A daemon thread that notices when a subprocess job ends (so listeners fire)."""
    def watch() -> None:
        assert h._proc is not None
        h._proc.wait()
        h._finish_subprocess()

    threading.Thread(target=watch, name=f"workbench-watch-{h.run_id}", daemon=True).start()


def start_test(run_ref: str, data: Any = None, *, limit: int | None = None, log: RunLog | None = None,
               mode: str = "thread", **options: Any) -> JobHandle:
    """Test a trained run of any kind (id, id prefix or name) in the background; returns at once.

    ``options`` are :func:`~workbench.training.run_test`'s (few-shot: ``n_way``, ``k_shot`` …;
    thread jobs only).
    """
    log = log or RunLog()
    rid = log.resolve(run_ref)
    rec = log.get(rid, metrics=False)
    if rec.get("status") not in TESTABLE:
        raise RunLogError(f"run {rid} ({rec.get('name')}) is {rec.get('status')!r}; only"
                          f" {', '.join(TESTABLE)} runs can be tested")
    h = JobHandle(rid, log, "test", mode, StopFlag(None))
    if mode == "thread":
        return _thread(h, lambda: run_test(rid, data, limit=limit, log=log, **options), "test")
    if options:
        raise ValueError(f"test options {sorted(options)} need a thread job")
    args = ["test", rid, "--db", str(log.path)]
    if limit is not None:
        args += ["--limit", str(limit)]
    if data is not None:
        args += ["--data", str(data)]
    h._proc = _spawn(args, Path(rec["dir"]))
    _watch(h)
    return h


def resume(run_ref: str, *, log: RunLog | None = None, mode: str = "auto", callbacks: Iterable[Any] = (),
           threads: int | None = None) -> JobHandle:
    """Continue a ``stopped`` or ``crashed`` run in the background from its last checkpoint; returns at once.

    The run keeps its record and id and ends with the steps it planned
    (:func:`workbench.training.resume_training`). ``mode``: ``"auto"`` / ``"thread"`` (a thread of
    this process) or ``"subprocess"`` (``python -m workbench resume RUN``). A run that cannot be
    resumed (another status, no checkpoint) raises :class:`~workbench.runlog.RunLogError` here.
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    log = log or RunLog()
    rec = log.get(log.resolve(run_ref), metrics=False)
    resume_checkpoint(rec)  # refuse now, not in the job
    flag = StopFlag(Path(rec["dir"]))
    h = JobHandle(rec["id"], log, "resume", "thread" if mode == "auto" else mode, flag)
    if h.mode == "thread":
        return _thread(h, lambda: resume_training(rec["id"], log=log, stop=flag, callbacks=callbacks,
                                                  threads=threads), "resume")
    if callbacks:
        raise ValueError("callbacks need a thread job (mode='thread')")
    args = ["resume", rec["id"], "--db", str(log.path), "--no-progress"]
    h._proc = _spawn(args + (["--threads", str(threads)] if threads is not None else []), Path(rec["dir"]))
    _watch(h)
    return h


def wait_all(handles: Iterable[JobHandle], timeout: float | None = None) -> list[dict[str, Any] | None]:
    """Wait for several jobs; returns their results in order."""
    t0 = time.monotonic()
    out = []
    for h in handles:
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - t0))
        out.append(h.wait(left))
    return out
