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
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import commands, runtime
from .runfiles import CHECKPOINTS, INTERRUPTED, LAST, STOP_FILE, StopFlag
from .commands import Command
from .commands.runner_options import finds_lr
from .learners.recipe import Prepared, Recipe, resolve
from .registry import ConfigError
from .runlog import Run, RunLog, RunLogError

#: Statuses a run can be tested from.
TESTABLE = ("trained", "stopped", "completed")
#: Statuses a run can be resumed from (from its ``checkpoints/last.ckpt``).
RESUMABLE = ("stopped", "crashed")

__all__ = ["run_training", "run_test", "resume_training", "resume_checkpoint", "train", "test", "prepare", "recipe_for", "create_run",
           "StopFlag", "TESTABLE", "RESUMABLE", "STOP_FILE"]


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
    """The run record of a prepared command: the same fields for every kind.

    A command with ``init_from`` gets its ``lineage`` here (:func:`workbench.lineage.resolve`):
    a parent that does not exist or does not fit raises :class:`ConfigError` before a run exists.
    """
    cmd = prepared.command
    if finds_lr(cmd.optimizer) and cmd.needs_processes():
        raise ConfigError("optimizer.params.lr", "'find' runs Lightning's lr finder in one process; give a number"
                          " for multi-process training", "find")
    from . import lineage

    extra = dict(prepared.record)
    parent = lineage.resolve(log, recipe_for(cmd), prepared)  # (stores the parent's id in the command)
    if parent is not None:
        extra["lineage"] = parent
    return log.start(name or cmd.name or cmd.display_name(), cmd.kind, cmd.to_dict(), tags=tags, status=status,
                     dataset=prepared.dataset, seed=cmd.seed, **extra)


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
    return _auto_test(recipe, prepared, res, log, progress, threads)


def resume_training(run_ref: str, *, log: RunLog | None = None, stop: StopFlag | None = None, progress: bool = False,
                    callbacks: Iterable[Any] = (), threads: int | None = None) -> dict[str, Any]:
    """Continue a ``stopped`` or ``crashed`` run from its ``checkpoints/last.ckpt``, in the same record.

    Lightning restores the weights, the optimizer, the loops and the training loader's place in
    its epoch (``trainer.fit(ckpt_path=…)``), so the run ends with the steps it planned, and a
    metric step already stored is not logged again. The data must be unchanged (same
    fingerprint). Returns what :func:`run_training` returns; the record gains a ``resumes`` entry.
    """
    from . import checkpoints
    from .nets.weights import load_checkpoint

    runtime.quiet_lightning()
    log = log or RunLog()
    rec = log.get(run_ref, metrics=False)
    ckpt = resume_checkpoint(rec)
    who = f"run {rec['id']} ({rec.get('name')})"
    prepared = prepare(rec["config"])
    if prepared.command.needs_processes():
        raise RunLogError(f"{who} trained in several processes; resuming multi-process runs is not supported")
    for key in ("fingerprint", "splits_sha1"):
        was, now = (rec.get("dataset") or {}).get(key), prepared.dataset.get(key)
        if was is not None and was != now:
            raise RunLogError(f"{who}: its data changed since it trained ({key} {was} → {now}); it cannot be resumed")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")  # ours
    step = int(load_checkpoint(ckpt).get("global_step", 0))
    resume = {"checkpoint": ckpt, "logged": checkpoints.last_logged_steps(log.read_metrics(rec["id"])),
              "seconds": float((rec.get("summary") or {}).get("train_seconds") or 0.0)}
    run = log.handle(rec["id"])
    entry = {"at": rec.get("updated_at"), "from_status": rec["status"], "from_step": step}
    run.set_status("running", error=None, resumes=[*(rec.get("resumes") or []), entry])
    recipe = recipe_for(prepared.command)
    threads = prepared.command.threads if threads is None else threads
    with runtime.job_threads(threads) as n_threads:
        res = _fit(recipe, prepared, log, run, stop, progress, list(callbacks), n_threads, resume)
    return _auto_test(recipe, prepared, res, log, progress, threads)


def resume_checkpoint(rec: Mapping[str, Any]) -> Path:
    """The checkpoint a run resumes from; :class:`RunLogError` saying why when it cannot be resumed."""
    from .learners.loading import run_file

    who = f"run {rec['id']} ({rec.get('name')})"
    if rec.get("status") not in RESUMABLE:
        raise RunLogError(f"{who} is {rec.get('status')!r}; only {' or '.join(RESUMABLE)} runs can be resumed")
    ckpt = run_file(rec, f"{CHECKPOINTS}/{LAST}")
    if not ckpt.is_file():
        raise RunLogError(f"{who} has no checkpoint to resume from ({CHECKPOINTS}/{LAST}): it ended before"
                          " its first one (checkpoint_every_s, an epoch's end or a stop request writes one);"
                          " train it again")
    return ckpt


def _auto_test(recipe: Recipe, prepared: Prepared, res: dict[str, Any], log: RunLog, progress: bool,
               threads: int | None) -> dict[str, Any]:
    auto = recipe.auto_test(prepared) if res["status"] == "trained" else None
    if auto is not None:
        tested = run_test(res["run_id"], log=log, progress=progress, threads=threads, **auto)
        res.update(status=tested["status"], summary={**res["summary"], **tested["summary"]})
    return res


def _fit(recipe: Recipe, prepared: Prepared, log: RunLog, run: Run | None, stop: StopFlag | None, progress: bool,
         callbacks: list[Any], n_threads: int, resume: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build, fit and record one run (``run`` is None on DDP ranks > 0; ``resume``: see :func:`resume_training`)."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    from . import checkpoints, lineage
    from .callbacks import RecordData, StopOnRequest

    stop = stop or StopFlag(run.dir if run is not None else None)
    if run is not None and stop.file is None:
        stop.file = run.dir / STOP_FILE
    ckpt_dir = run.dir / CHECKPOINTS if run is not None else None
    try:
        prepared, module, fields = _model(recipe, prepared, log, run, resume)
        cmd = prepared.command
        logger, extra = _loggers(cmd, log, run, resume, fields)
        stopper, record = StopOnRequest(stop, cmd.time_limit_s), RecordData(prepared, run, n_threads, fields)
        saver = checkpoints.ResumableCheckpoint(ckpt_dir, cmd.checkpoint_every_s, stopper, run)
        best = ModelCheckpoint(dirpath=str(ckpt_dir) if ckpt_dir else None, filename="best",
                               monitor=prepared.monitor, mode="min", save_last=False) if prepared.monitor else None
        own = [c for c in (best, stopper, record, saver, lineage.freeze_callback(module, fields.get("lineage"))) if c]
        trainer = pl.Trainer(logger=[logger, *extra], callbacks=own + recipe.callbacks(prepared) + callbacks,
                             enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
                             enable_checkpointing=best is not None,
                             **{**cmd.trainer.trainer_kwargs(), **recipe.fit_options(prepared)})
    except Exception as exc:
        if run is not None:
            run.finish("failed", error=runtime.error_text(exc))
        raise
    error, interrupted, seconds = _fit_catching(trainer, module, prepared, stop,
                                                resume["checkpoint"] if resume else None)
    stopped = interrupted or stopper.reason == "stopped" or stop.is_set()
    if error is None:  # every rank takes part in saving
        _final_checkpoint(trainer, saver, interrupted)
    if not trainer.is_global_zero or run is None:
        if error is not None:
            raise error
        return {"run_id": None, "status": None, "summary": {}, "error": None, "rank": trainer.global_rank}
    summary = _summary(trainer, module, log, run, seconds + (resume or {}).get("seconds", 0.0),
                       "stopped" if interrupted else stopper.reason, stopped)
    arts = _checkpoints(log, run, best, prepared.artifacts)
    if error is not None:
        run.finish("failed", error=runtime.error_text(error), summary=summary, artifacts=arts)
        raise error
    status = "stopped" if stopped else "trained"
    run.finish(status, summary=summary, artifacts=arts)
    if stop.file is not None:
        stop.file.unlink(missing_ok=True)
    return {"run_id": run.id, "status": status, "summary": summary, "error": None}


def _model(recipe: Recipe, prepared: Prepared, log: RunLog, run: Run | None,
           resume: Mapping[str, Any] | None) -> tuple[Prepared, Any, dict[str, Any]]:
    """The module to train — the lr finder's rate, the seeded init, the parent's weights — and
    the record fields saying so (``lr_find``, ``lineage``). A resumed run reuses the found rate
    and takes its weights from its checkpoint."""
    from . import lineage

    cmd = prepared.command
    rec = log.get(run.id, metrics=False) if run is not None else {}
    parent = rec.get("lineage")
    if parent is None and cmd.init_from is not None:  # DDP ranks > 0 look the parent up themselves
        parent = lineage.resolve(log, recipe, prepared)
    fields: dict[str, Any] = {}
    if finds_lr(cmd.optimizer):
        from .lrfind import find_lr, with_found_lr

        found = rec.get("lr_find") if resume else None
        if not found:
            init = (lambda m: lineage.apply(m, prepared, parent, log)) if parent else None
            found = find_lr(recipe, prepared, init, root=str(run.dir) if run is not None else None)
        fields["lr_find"] = found
        prepared = with_found_lr(prepared, found["suggestion"])
    with runtime.seeded(cmd.seed):  # the model's initial weights: a pure function of the seed
        module = recipe.build(prepared)
    if parent is not None:
        fields["lineage"] = parent if resume else lineage.apply(module, prepared, parent, log)
    return prepared, module, fields


def _loggers(cmd: Command, log: RunLog, run: Run | None, resume: Mapping[str, Any] | None,
             fields: dict[str, Any]) -> tuple[Any, list[Any]]:
    """The run log's logger (a resumed run's skips the steps it has) and the command's extra loggers."""
    from . import checkpoints
    from .runlog.lightning import WorkbenchLogger

    kw = dict(kind=cmd.kind, config=cmd.to_dict(), log=log, run=run, finalize_status=None)
    main = checkpoints.SkipLogged(cmd.display_name(), logged=resume["logged"], **kw) if resume else \
        WorkbenchLogger(cmd.display_name(), **kw)
    if run is None or not cmd.loggers:
        return main, []
    from .exporters.loggers import extra_loggers, logger_records

    rec = log.get(run.id, metrics=False)
    extra = extra_loggers(cmd.loggers, run.dir, rec.get("name") or cmd.display_name(), run.id, rec.get("loggers"),
                          part=len(rec.get("resumes") or []) if resume else 0)
    fields["loggers"] = logger_records(extra, run.dir, rec.get("loggers"))
    return main, extra


def _final_checkpoint(trainer: Any, saver: Any, interrupted: bool) -> None:
    """``last.ckpt`` once fit returns: the end of training, or where a stop request ended it.

    An exception-like interrupt (``KeyboardInterrupt`` raised in code, a second Ctrl-C) leaves
    Lightning's loops between two hooks, a state it cannot resume from exactly: the run keeps
    its last clean checkpoint, or gets ``interrupted.ckpt`` (testable, not resumable).
    """
    try:
        if interrupted:
            if saver.saved_at_step is None:
                trainer.save_checkpoint(str(saver.path(INTERRUPTED)), weights_only=False)
        elif saver.saved_at_step != int(trainer.global_step):  # (an epoch's end or a stop may have saved it)
            saver.save(trainer)
        saver.commit()
    except Exception:  # keeping the run's status right matters more than this checkpoint
        pass


def _fit_catching(trainer: Any, module: Any, prepared: Prepared, stop: StopFlag,
                  ckpt_path: str | Path | None = None) -> tuple[BaseException | None, bool, float]:
    """``trainer.fit``: ``(error, interrupted, seconds)``; SIGINT is restored afterwards.

    Ctrl-C (SIGINT under Python's default handler) is a stop request at the next batch end —
    a clean, resumable checkpoint — and a second Ctrl-C interrupts at once.
    """
    on_main = threading.current_thread() is threading.main_thread()
    prev_sigint = signal.getsignal(signal.SIGINT) if on_main else None
    if on_main and prev_sigint is signal.default_int_handler:
        def graceful(signum: int, frame: Any) -> None:
            if stop.is_set():
                raise KeyboardInterrupt
            stop.set()
        signal.signal(signal.SIGINT, graceful)
    error, interrupted = None, False
    t0 = time.monotonic()
    try:
        trainer.fit(module, datamodule=prepared.datamodule,
                    **({"ckpt_path": str(ckpt_path), "weights_only": True} if ckpt_path else {}))
    except (KeyboardInterrupt, SystemExit) as exc:
        # Lightning turns an interrupt into a graceful shutdown and then SystemExit(1).
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
                         "stop_reason": "stopped" if stopped else reason,
                         "n_parameters": sum(p.numel() for p in module.parameters() if p.requires_grad)}
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

    last = rel(run.dir / CHECKPOINTS / LAST) or rel(run.dir / CHECKPOINTS / INTERRUPTED)
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
