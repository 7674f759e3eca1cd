"""The one runner: every training command, of any kind, trains and tests through here.

    res = run_training(command, data, log=log, name="adam", tags=["sweep"])   # any kind
    run_test(res["run_id"], limit=200)                                        # any kind

The command's family supplies a small recipe (:mod:`workbench.learners.recipe`: its data, its
learner, how long to train, what testing means); everything else is shared and lives here —
the run record and its fields, the job's seeded initialisation and thread count, the Trainer,
stop requests / Ctrl-C / time limit, checkpoints, the summary, failure marking, and testing
through ``trainer.test``. :mod:`workbench.jobs` schedules these calls (thread, subprocess, DDP).

Statuses: ``running → trained`` (or ``stopped`` / ``failed``), ``testing → completed``; a
recipe may test right after training (few-shot kinds: their ``test_episodes``).
"""
from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import commands, runtime
from .commands import Command
from .learners.recipe import Prepared, Recipe, resolve
from .runlog import Run, RunLog, RunLogError

STOP_FILE = "STOP"
#: Statuses a run can be tested from.
TESTABLE = ("trained", "stopped", "completed")

__all__ = ["run_training", "run_test", "train", "test", "prepare", "recipe_for", "create_run", "StopFlag",
           "TESTABLE", "STOP_FILE"]


class StopFlag:
    """A stop request a job can see: an in-process event, or a ``STOP`` file in the run folder."""

    def __init__(self, run_dir: Path | None = None, event: threading.Event | None = None) -> None:
        self.event = event or threading.Event()
        self.file = Path(run_dir) / STOP_FILE if run_dir is not None else None

    def set(self) -> None:
        self.event.set()
        if self.file is not None:
            try:
                self.file.touch()
            except OSError:
                pass

    def is_set(self) -> bool:
        return self.event.is_set() or (self.file is not None and self.file.exists())


def recipe_for(command: Command) -> Recipe:
    """The recipe of a parsed command's family (named by the command: ``command.recipe``)."""
    return resolve(type(command).recipe)(command)


def prepare(command: Command | Mapping[str, Any] | str | Path, data: Any = None) -> Prepared:
    """Parse a command of any kind and check it against its data; nothing is created.

    Everything that can be wrong with a command fails here (a :class:`~workbench.registry.ConfigError`
    naming the field), before a run exists: ``train --check``, jobs and sweeps call it first.
    """
    cmd = commands.parse(command)
    adjusted = cmd.fit_machine()  # what cannot run on this machine fails before the data is read
    prepared = recipe_for(cmd).prepare(data)
    if adjusted:
        prepared.record["adjusted"] = adjusted
    return prepared


def create_run(log: RunLog, prepared: Prepared, *, name: str | None = None, tags: Iterable[str] = (),
               status: str = "running") -> Run:
    """The run record of a prepared command: the same fields for every kind."""
    cmd = prepared.command
    return log.start(name or cmd.name or cmd.display_name(), cmd.kind, cmd.to_dict(), tags=tags, status=status,
                     dataset=prepared.dataset, seed=cmd.seed, **prepared.record)


def run_training(command: Command | Mapping[str, Any] | str | Path, data: Any = None, *,
                 log: RunLog | None = None, run: Run | str | None = None, name: str | None = None,
                 tags: Iterable[str] = (), stop: StopFlag | None = None, progress: bool = False,
                 prepared: Prepared | None = None, callbacks: Iterable[Any] = (),
                 threads: int | None = None) -> dict[str, Any]:
    """Train synchronously in this thread (the body of every training job, of ``train`` and the CLI).

    Returns ``{"run_id", "status", "summary", "error"}`` (``run_id`` is None on DDP ranks > 0).
    ``run``: a pre-created (``queued``) run to train into; ``stop``: a :class:`StopFlag`;
    ``callbacks``: extra Lightning callbacks; ``threads``: intra-op threads for this job
    (default: the command's ``threads``, else the calling thread's). The run ends ``trained``
    (or ``completed`` when the recipe tests at once), ``stopped`` (stop request or Ctrl-C; a
    checkpoint is kept) or ``failed`` (the error text is stored and the exception re-raised).
    """
    runtime.quiet_lightning()
    log = log or RunLog()
    rank0 = runtime.env_rank() == 0
    if isinstance(run, str) and rank0:
        run = log.handle(run)
    if rank0 and isinstance(run, Run) and run.status == "queued":
        run.set_status("running")
    try:
        if prepared is None:
            prepared = prepare(command, data)
        recipe = recipe_for(prepared.command)
        if threads is None:
            threads = prepared.command.threads
        runtime.threads_for_job(threads)
    except Exception as exc:
        if rank0 and isinstance(run, Run):  # a pre-created run (background job) records why it never trained
            run.finish("failed", error=runtime.error_text(exc))
        raise
    if rank0 and run is None:
        run = create_run(log, prepared, name=name, tags=tags)
    with runtime.job_threads(threads) as n_threads:
        res = _fit(recipe, prepared, log, run if rank0 else None, stop, progress, list(callbacks), n_threads)
    auto = recipe.auto_test(prepared) if res["status"] == "trained" else None
    if auto is not None:
        tested = run_test(res["run_id"], log=log, progress=progress, threads=threads, **auto)
        res.update(status=tested["status"], summary={**res["summary"], **tested["summary"]})
    return res


def _callbacks(flag: StopFlag, prepared: Prepared, run: Run | None, n_threads: int) -> list[Any]:
    """The callbacks every kind trains with: stop / time limit, and the record's data files."""
    import pytorch_lightning as pl

    time_limit = prepared.command.time_limit_s

    class StopOnRequest(pl.Callback):
        """Graceful stop at a step boundary (all DDP ranks together): requested, or time is up."""

        def __init__(self) -> None:
            self.t0 = time.monotonic()
            self.reason: str | None = None

        def _check(self, trainer: pl.Trainer) -> None:
            req = flag.is_set()
            if trainer.world_size > 1:
                req = bool(trainer.strategy.reduce_boolean_decision(req, all=False))
            if req:
                self.reason = "stopped"
            elif time_limit is not None and time.monotonic() - self.t0 > time_limit:
                self.reason = "time_limit"
            if self.reason:
                trainer.should_stop = True

        def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
            self._check(trainer)

        def on_validation_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
            if not trainer.sanity_checking:  # a long validation should not delay a stop to the next epoch
                self._check(trainer)

    class RecordData(pl.Callback):
        """Writes the data files (split) and the model size into the run once training starts."""

        def on_fit_start(self, trainer: pl.Trainer, module: Any) -> None:
            if run is None:
                return
            run.dir.mkdir(parents=True, exist_ok=True)
            for fname, content in prepared.files.items():
                (run.dir / fname).write_text(json.dumps(content), encoding="utf-8")
            run.update(dataset=prepared.dataset, n_parameters=_n_parameters(module), runtime={"threads": n_threads})

    return [StopOnRequest(), RecordData()]


def _n_parameters(module: Any) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _fit(recipe: Recipe, prepared: Prepared, log: RunLog, run: Run | None, stop: StopFlag | None, progress: bool,
         callbacks: list[Any], n_threads: int) -> dict[str, Any]:
    """Build, fit and record one run (``run`` is None on DDP ranks > 0)."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    from .runlog.lightning import WorkbenchLogger

    cmd = prepared.command
    stop = stop or StopFlag(run.dir if run is not None else None)
    if run is not None and stop.file is None:
        stop.file = run.dir / STOP_FILE
    ckpt_dir = run.dir / "checkpoints" if run is not None else None
    logger = WorkbenchLogger(cmd.display_name(), kind=cmd.kind, config=cmd.to_dict(), log=log, run=run,
                             finalize_status=None)
    try:
        stopper, record = _callbacks(stop, prepared, run, n_threads)
        best = ModelCheckpoint(dirpath=str(ckpt_dir) if ckpt_dir else None, filename="best",
                               monitor=prepared.monitor, mode="min", save_last=False) if prepared.monitor else None
        with runtime.seeded(cmd.seed):  # the model's initial weights: a pure function of the seed
            module = recipe.build(prepared)
        trainer = pl.Trainer(logger=logger, callbacks=[c for c in (best, stopper, record) if c] + recipe.callbacks(
            prepared) + callbacks, enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
            enable_checkpointing=best is not None, **{**cmd.trainer.trainer_kwargs(), **recipe.fit_options(prepared)})
    except Exception as exc:
        if run is not None:
            run.finish("failed", error=runtime.error_text(exc))
        raise
    error, interrupted, seconds = _fit_catching(trainer, module, prepared)
    stopped = interrupted or stopper.reason == "stopped" or stop.is_set()
    if error is None:  # every rank takes part in saving
        try:
            trainer.save_checkpoint(str(Path(ckpt_dir or ".") / "last.ckpt"), weights_only=False)
        except Exception:  # keeping the run's status right matters more than this checkpoint
            pass
    if not trainer.is_global_zero or run is None:
        if error is not None:
            raise error
        return {"run_id": None, "status": None, "summary": {}, "error": None, "rank": trainer.global_rank}
    summary = _summary(trainer, module, log, run, seconds, "stopped" if interrupted else stopper.reason, stopped)
    arts = _checkpoints(log, run, best, prepared.artifacts)
    if error is not None:
        run.finish("failed", error=runtime.error_text(error), summary=summary, artifacts=arts)
        raise error
    status = "stopped" if stopped else "trained"
    run.finish(status, summary=summary, artifacts=arts)
    if stop.file is not None:
        stop.file.unlink(missing_ok=True)
    return {"run_id": run.id, "status": status, "summary": summary, "error": None}


def _fit_catching(trainer: Any, module: Any, prepared: Prepared) -> tuple[BaseException | None, bool, float]:
    """``trainer.fit``: ``(error, interrupted by Ctrl-C, seconds)``; SIGINT is restored afterwards."""
    on_main = threading.current_thread() is threading.main_thread()
    prev_sigint = signal.getsignal(signal.SIGINT) if on_main else None
    error, interrupted = None, False
    t0 = time.monotonic()
    try:
        trainer.fit(module, datamodule=prepared.datamodule)
    except (KeyboardInterrupt, SystemExit) as exc:
        # Lightning turns Ctrl-C into a graceful shutdown and then SystemExit(1).
        interrupted = True
        if isinstance(exc, SystemExit) and exc.code not in (1, None):
            raise
    except Exception as exc:
        error = exc
    finally:
        if on_main and prev_sigint is not None:
            signal.signal(signal.SIGINT, prev_sigint)  # Lightning leaves SIGINT ignored after Ctrl-C
    return error, interrupted, time.monotonic() - t0


def _summary(trainer: Any, module: Any, log: RunLog, run: Run, seconds: float, reason: str | None,
             stopped: bool) -> dict[str, Any]:
    """What every kind's summary holds: length, time, why it ended, size, final and best metrics."""
    from pytorch_lightning.callbacks import EarlyStopping

    s: dict[str, Any] = {"steps": int(trainer.global_step), "epochs_completed": int(trainer.current_epoch),
                         "train_seconds": round(seconds, 2), "stopped": bool(stopped),
                         "stop_reason": "stopped" if stopped else reason, "n_parameters": _n_parameters(module)}
    es = [c for c in trainer.callbacks if isinstance(c, EarlyStopping)]
    if es:
        s["early_stopped"] = bool(es[0].stopped_epoch > 0)
    m = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
    for k in ("val_loss", "val_accuracy", "train_loss"):
        if k in m:
            s[f"final_{k}"] = m[k]
    run.flush()
    vals = [float(r["val_accuracy"]) for r in log.read_metrics(run.id) if "val_accuracy" in r]
    if vals:
        s["best_val_accuracy"] = max(vals)
    return s


def _checkpoints(log: RunLog, run: Run, best: Any, extra: Mapping[str, str]) -> dict[str, Any]:
    """The record's artifacts: the best (or last) checkpoint, the last one, the data files."""
    arts = dict(log.get(run.id, metrics=False).get("artifacts") or {})
    base = run.dir.resolve()

    def rel(p: str | Path | None) -> str | None:
        if not p or not Path(p).is_file():
            return None
        return Path(p).resolve().relative_to(base).as_posix()

    last = rel(run.dir / "checkpoints" / "last.ckpt")
    arts.update(extra)
    arts.update({"checkpoint": rel(best.best_model_path) if best is not None and best.best_model_path else None,
                 "last_checkpoint": last})
    arts["checkpoint"] = arts["checkpoint"] or last
    if best is not None and best.best_model_score is not None:
        arts["best_score"] = {"monitor": best.monitor, "value": float(best.best_model_score)}
    return arts


def train(command: Command | Mapping[str, Any] | str | Path, data: Any = None, *, name: str | None = None,
          tags: Iterable[str] = (), log: RunLog | None = None, progress: bool = True,
          threads: int | None = None) -> dict[str, Any]:
    """Train synchronously with a progress bar (the CLI's ``train``; any kind)."""
    return run_training(command, data, log=log, name=name, tags=tags, progress=progress, threads=threads)


def run_test(run_ref: str, data: Any = None, *, limit: int | None = None, log: RunLog | None = None,
             progress: bool = False, record: bool = True, threads: int | None = None, accelerator: str | None = None,
             **options: Any) -> dict[str, Any]:
    """Test a trained run of any kind through ``trainer.test``.

    Baseline runs: its held-out split (or every image of another folder ``data``), at most
    ``limit`` images. Few-shot runs: ``limit`` (or ``episodes``) test episodes of its held-out
    classes; ``n_way``, ``k_shot``, ``q_query``, ``split``, ``seed`` change the setting. The
    run moves ``testing → completed`` with the test's summary and ``test_config`` (``record=False``:
    only compute). ``accelerator`` overrides the command's. Returns ``{"run_id", "status", "summary", "error", "lines", "details"}``.
    """
    import pytorch_lightning as pl

    from .commands.machine import available
    from .learners.loading import load_learner, run_file

    runtime.quiet_lightning()
    log = log or RunLog()
    rec = log.get(run_ref, metrics=False)
    if record and rec.get("status") not in TESTABLE:
        raise RunLogError(f"run {rec['id']} ({rec.get('name')}) is {rec.get('status')!r}; only"
                          f" {', '.join(TESTABLE)} runs can be tested")
    module, cmd = load_learner(rec)
    plan = recipe_for(cmd).test_plan(module, rec, data, limit, **options)  # bad options fail before any change
    report = run_file(rec, "test_report.json") if record and plan.report is not None else None  # (and a bad path)
    # a run trained on a GPU is tested on whatever this machine has: testing is device-independent
    accel = accelerator or (cmd.trainer.accelerator if available(cmd.trainer.accelerator) else "auto")
    run = log.handle(rec["id"]) if record else None
    if run is not None:
        run.set_status("testing", test_config=plan.config)
    try:
        with runtime.job_threads(threads if threads is not None else cmd.threads):
            trainer = pl.Trainer(logger=False, accelerator=accel, devices=1, enable_progress_bar=progress,
                                 enable_model_summary=False, enable_checkpointing=False, inference_mode=False)
            trainer.test(module, verbose=False, **plan.loaders)
        summary = plan.finish(module)
    except BaseException as exc:
        if run is not None:  # a failed test never costs a run its training: back to what it was, with the reason
            run.finish(rec["status"], test_error=runtime.error_text(exc))
        raise
    details = plan.details(module) if plan.details else {}
    if run is not None:
        arts = dict(rec.get("artifacts") or {})
        if report is not None:
            report.write_text(json.dumps(plan.report(module)), encoding="utf-8")
            arts["test_report"] = "test_report.json"
        cleared = {"test_error": None} if rec.get("test_error") else {}
        run.finish("completed", summary=summary, artifacts=arts, **cleared)
    return {"run_id": rec["id"], "status": "completed" if record else rec["status"], "summary": summary,
            "error": None, "lines": plan.lines(summary), "details": details}


def test(run_ref: str, data: Any = None, *, limit: int | None = None, log: RunLog | None = None,
         progress: bool = False, **options: Any) -> dict[str, Any]:
    """Test synchronously (the CLI's ``test``)."""
    return run_test(run_ref, data, limit=limit, log=log, progress=progress, **options)


test.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported into a test module
