"""Background training and testing: start a run, keep working, watch it, stop it.

    job = start_training({"model": "small_cnn", "epochs": 3}, data="~/data/shapes")
    job.status, job.metrics()[-1]      # live
    job.stop(); job.wait()              # graceful: run ends "stopped", checkpoint kept
    test = start_test(job.run_id); test.wait()

**Thread or subprocess?** Jobs run in a *thread* of the calling process by default:
they start at once (a subprocess pays 3–5 s to import torch and Lightning again), share
the kernel's decoded-image cache and in-memory data, and report live metrics without
files in between. The kernel stays responsive because torch releases the GIL inside its
ops (tests/training/test_kernel.py checks this in a real ipykernel). Panels never print
from the job thread — since ipykernel 7 routes a thread's output by the cell that started
it — they update widget values, which reach the front end whatever cell is running.
Jobs asking for several processes (``strategy`` ``ddp*``, ``devices`` > 1 or ``num_nodes``
> 1) run as a *subprocess* (``python -m workbench train --run-id …``), because Lightning's
DDP launcher re-executes the script, which a kernel cannot be; ``mode="subprocess"``
forces that for isolation (a crash then cannot take the kernel with it).

Statuses in the run log: ``queued → running → trained`` (or ``stopped`` / ``failed``),
then for a test ``testing → completed``. A process that dies leaves ``crashed``.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .config import FEWSHOT_KINDS, ConfigError, TrainingCommand
from .runlog import ACTIVE, Run, RunLog, RunLogError

STOP_FILE = "STOP"


# -- helpers ---------------------------------------------------------------------------

def command_dict(command: TrainingCommand | Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A command as a plain dict (from a TrainingCommand, a dict, a JSON file path or JSON text)."""
    if isinstance(command, TrainingCommand):
        return command.to_dict()
    if isinstance(command, Mapping):
        return json.loads(json.dumps(dict(command)))
    if isinstance(command, (str, Path)):
        text = str(command).strip()
        if text.startswith("{"):  # JSON text (from an editor) rather than a file name
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError("", f"not valid JSON: {exc.msg} at line {exc.lineno}", text[:80]) from None
        p = Path(command).expanduser()
        if not p.is_file():
            raise ConfigError("", f"no command file {str(p)!r}", str(p))
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError("", f"{p}: not valid JSON: {exc.msg} at line {exc.lineno}", str(p)) from None
    raise ConfigError("", f"a training command is a dict, a TrainingCommand or a JSON file, got"
                      f" {type(command).__name__}", command)


def _env_rank() -> int:
    """This process's global rank as the launcher told it (0 outside distributed runs)."""
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return max(int(os.environ.get("LOCAL_RANK", "0") or 0), int(os.environ.get("NODE_RANK", "0") or 0))


def needs_processes(cmd: TrainingCommand) -> bool:
    """True when Lightning will start several processes for this command (DDP and friends)."""
    t = cmd.trainer
    many = (isinstance(t.devices, int) and t.devices not in (1,)) or (isinstance(t.devices, list) and len(t.devices) > 1)
    return t.num_nodes > 1 or t.strategy.startswith(("ddp", "fsdp", "deepspeed")) and t.strategy != "ddp_notebook" \
        or (many and t.devices != "auto")


def default_name(cmd: TrainingCommand) -> str:
    model = cmd.model.preset if cmd.model.layers is None else f"{len(cmd.model.layers)}layers"
    return f"{model}-{cmd.optimizer.name}"


def _quiet_lightning() -> None:
    # Lightning's banner lines ("GPU available: …") would land in whichever cell runs; keep them out.
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero",
                 "pytorch_lightning.accelerators.cuda", "lightning_fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")
    warnings.filterwarnings("ignore", message=".*Total length of .* across ranks is zero.*")
    warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def _error_text(exc: BaseException) -> str:
    msg = str(exc).strip()
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def prepare(command: TrainingCommand | Mapping[str, Any], data: str | Path | None = None):
    """Parse and fully validate a baseline command against its data: ``(command, datamodule)``.

    Everything that can be wrong with a command fails here, before a run exists.
    """
    from .data.imagefolder import ImageFolderDataModule, scan_folder

    cmd = TrainingCommand.from_dict(command)
    root = data if data is not None else cmd.data
    if root is None:
        raise ConfigError("data", "no dataset: pass data=DIR (or --data) or set 'data' in the command", None)
    classes, _ = scan_folder(root, cmd.labels, cmd.label_map)
    cmd.validate(n_labels=len(classes))  # names, params and shapes, before decoding anything
    dm = ImageFolderDataModule(root, cmd)
    cmd.data = str(dm.root)
    dm.command.data = cmd.data
    return cmd, dm


class StopFlag:
    """A stop request a job can see: an in-process event, or a ``STOP`` file in the run folder."""

    def __init__(self, run_dir: Path | None = None) -> None:
        self.event = threading.Event()
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


def _callbacks(flag: StopFlag, dm: Any, cmd: TrainingCommand, ckpt_dir: Path | None):
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    class StopOnRequest(pl.Callback):
        """Graceful stop: finish the current batch, then end fit (all DDP ranks together)."""

        requested = False

        def _check(self, trainer: pl.Trainer) -> None:
            req = flag.is_set()
            if trainer.world_size > 1:
                req = bool(trainer.strategy.reduce_boolean_decision(req, all=False))
            if req:
                self.requested = True
                trainer.should_stop = True

        def on_train_batch_end(self, trainer, *args: Any) -> None:
            self._check(trainer)

        def on_validation_batch_end(self, trainer, *args: Any) -> None:
            if not trainer.sanity_checking:  # a long validation should not delay a stop to the next epoch
                self._check(trainer)

    class RecordData(pl.Callback):
        """Stores the split with the run once the run exists (rank zero only)."""

        def on_fit_start(self, trainer, module) -> None:
            if not trainer.is_global_zero:
                return
            run = trainer.logger.experiment
            run.dir.mkdir(parents=True, exist_ok=True)
            (run.dir / "split.json").write_text(json.dumps(dm.split_files()), encoding="utf-8")
            from .nets.builder import count_parameters

            run.update(dataset=dm.info(), n_parameters=count_parameters(module))

    has_val = bool(dm.split.get("val"))
    stop = StopOnRequest()
    ckpt = ModelCheckpoint(dirpath=str(ckpt_dir) if ckpt_dir else None, filename="best",
                           monitor="val_loss" if has_val else None, mode="min", save_last=True)
    cbs = [ckpt, stop, RecordData()]
    if cmd.early_stopping is not None:
        es = cmd.early_stopping
        if es.monitor.startswith("val") and not has_val:
            raise ConfigError("early_stopping.monitor", f"{es.monitor} needs a validation split (split.val > 0)",
                              es.monitor)
        cbs.append(EarlyStopping(monitor=es.monitor, patience=es.patience, mode=es.mode, min_delta=es.min_delta))
    return cbs, stop, ckpt


# -- training ------------------------------------------------------------------------------

def run_training(command: TrainingCommand | Mapping[str, Any], data: str | Path | None = None, *,
                 log: RunLog | None = None, run: Run | str | None = None, name: str | None = None,
                 tags: Iterable[str] = (), stop: StopFlag | None = None, progress: bool = False,
                 prepared: Any = None, callbacks: Iterable[Any] = ()) -> dict[str, Any]:
    """Train synchronously in this process (the body of every training job and of ``train``).

    Returns ``{"run_id", "status", "summary", "error"}`` (``run_id`` is None on DDP ranks > 0).
    ``callbacks`` are extra Lightning callbacks (timers, custom plots …).
    The run ends ``trained``, ``stopped`` (stop request or Ctrl-C; a checkpoint is kept)
    or ``failed`` (the error text is stored and the exception re-raised).
    """
    import pytorch_lightning as pl

    from .learners.classifier import ImageClassifier
    from .runlog.lightning import WorkbenchLogger

    _quiet_lightning()
    log = log or RunLog()
    rank0 = _env_rank() == 0
    if isinstance(run, str):
        run = log.handle(run) if rank0 else run
    if rank0 and isinstance(run, Run) and run.status == "queued":
        run.set_status("running")
    try:
        cmd, dm = prepared if prepared is not None else prepare(command, data)
    except Exception as exc:
        if rank0 and isinstance(run, Run):  # a pre-created run (background job) records why it never trained
            run.finish("failed", error=_error_text(exc))
        raise
    cfg = cmd.to_dict()
    stop = stop or StopFlag(run.dir if isinstance(run, Run) else None)
    if isinstance(run, Run) and stop.file is None:
        stop.file = run.dir / STOP_FILE
    logger = WorkbenchLogger(name or cmd.name or default_name(cmd), kind="baseline", config=cfg, log=log,
                             run=run, tags=tuple(tags), finalize_status=None, dataset=dm.info(), seed=cmd.seed)
    run_dir = run.dir if isinstance(run, Run) else None
    try:
        cbs, stopper, ckpt = _callbacks(stop, dm, cmd, run_dir / "checkpoints" if run_dir else None)
        cbs += list(callbacks)
        from .nets.builder import RNG_LOCK

        with RNG_LOCK:  # no other job or validation may draw from the global RNG during a seeded init
            pl.seed_everything(cmd.seed, workers=True, verbose=False)
            module = ImageClassifier(cfg, dm.classes, dm.in_shape)
        trainer = pl.Trainer(max_epochs=cmd.epochs, logger=logger, callbacks=cbs,
                             enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
                             **cmd.trainer.trainer_kwargs())
    except Exception as exc:
        if rank0:
            r = logger.experiment
            r.finish("failed", error=_error_text(exc))
        raise
    on_main = threading.current_thread() is threading.main_thread()
    prev_sigint = signal.getsignal(signal.SIGINT) if on_main else None
    interrupted, error = False, None
    try:
        trainer.fit(module, datamodule=dm)
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
    # a callback may also ask through the flag (e.g. the gone-bad detector) after the stopper ran
    stopped = interrupted or stopper.requested or stop.is_set()
    if stopped and error is None:
        try:
            last = Path(ckpt.dirpath or ".") / "stopped.ckpt"
            trainer.save_checkpoint(str(last), weights_only=False)
        except Exception:  # keeping the run's status right matters more than this checkpoint
            pass
    if not trainer.is_global_zero:
        if error is not None:
            raise error
        return {"run_id": None, "status": None, "summary": {}, "error": None, "rank": trainer.global_rank}
    r = logger.experiment
    if error is not None:
        r.finish("failed", error=_error_text(error), summary=_fit_summary(trainer, module, stopped),
                 artifacts=_checkpoints(r, ckpt))
        raise error
    status = "stopped" if stopped else "trained"
    summary = _fit_summary(trainer, module, stopped)
    r.finish(status, summary=summary, artifacts=_checkpoints(r, ckpt))
    if stop.file is not None and stop.file.exists():
        stop.file.unlink(missing_ok=True)
    return {"run_id": r.id, "status": status, "summary": summary, "error": None}


def _fit_summary(trainer: Any, module: Any, stopped: bool) -> dict[str, Any]:
    from .nets.builder import count_parameters

    s: dict[str, Any] = {"epochs_completed": int(trainer.current_epoch), "steps": int(trainer.global_step),
                         "n_parameters": count_parameters(module), "stopped": bool(stopped)}
    from pytorch_lightning.callbacks import EarlyStopping

    es = [c for c in trainer.callbacks if isinstance(c, EarlyStopping)]
    if es:
        s["early_stopped"] = bool(es[0].stopped_epoch > 0)
    m = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
    for k in ("val_loss", "val_accuracy", "train_loss"):
        if k in m:
            s[f"final_{k}"] = m[k]
    return s


def _checkpoints(run: Run, ckpt: Any) -> dict[str, Any]:
    arts = dict((run.log._raw(run.id).get("artifacts") or {}))
    base = run.dir

    def rel(p: str | None) -> str | None:
        if not p or not Path(p).is_file():
            return None
        try:
            return Path(p).resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            return str(p)

    best = rel(ckpt.best_model_path)
    last = rel(ckpt.last_model_path) or rel(str(Path(ckpt.dirpath or ".") / "stopped.ckpt"))
    stopped = rel(str(Path(ckpt.dirpath or ".") / "stopped.ckpt"))
    arts.update({"checkpoint": best or stopped or last, "last_checkpoint": stopped or last, "split": "split.json"})
    if ckpt.best_model_score is not None:
        arts["best_score"] = {"monitor": ckpt.monitor, "value": float(ckpt.best_model_score)}
    return arts


def train(command: TrainingCommand | Mapping[str, Any] | str | Path, data: str | Path | None = None, *,
          name: str | None = None, tags: Iterable[str] = (), log: RunLog | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Train synchronously (the CLI's ``train``); few-shot kinds go to :mod:`workbench.learners.fewshot`."""
    d = command_dict(command)
    if d.get("kind", "baseline") in FEWSHOT_KINDS:
        from .learners.fewshot import train_from_command

        log = log or RunLog()
        return _as_result(train_from_command(d, data=data, log=log), log)
    return run_training(d, data, log=log, name=name, tags=tags, progress=progress)


def _as_result(res: Any, log: RunLog, run_id: str | None = None) -> dict[str, Any]:
    """A learner's return value (a run id or a dict) as ``{"run_id", "status", "summary", "error"}``."""
    out = dict(res) if isinstance(res, Mapping) else {"run_id": res if isinstance(res, str) else run_id}
    out["run_id"] = out.get("run_id") or run_id
    if out["run_id"] and (out.get("status") is None or "summary" not in out):
        rec = log._raw(log.resolve(out["run_id"]))
        out.setdefault("summary", rec.get("summary") or {})
        out["status"] = out.get("status") or rec["status"]
        out.setdefault("error", rec.get("error"))
    out.setdefault("summary", {})
    out.setdefault("error", None)
    return out


# -- testing -----------------------------------------------------------------------------

TESTABLE = ("trained", "stopped", "completed")


def run_test(run_ref: str, data: str | Path | None = None, *, limit: int | None = None,
             log: RunLog | None = None, progress: bool = False) -> dict[str, Any]:
    """Test a trained run on its held-out split (or on every image of another folder ``data``).

    The run moves ``testing → completed``; its ``test_config`` and a summary with accuracy,
    top-k accuracy, per-class accuracy and the confusion matrix are stored in its record.
    """
    import pytorch_lightning as pl

    from .data.imagefolder import ImageFolderDataModule, scan_folder
    from .learners.classifier import load_classifier

    _quiet_lightning()
    log = log or RunLog()
    rec = log.get(run_ref, metrics=False)
    if rec.get("kind") != "baseline":
        raise RunLogError(f"run {rec['id']} is a {rec.get('kind')!r} run; workbench test handles baseline runs")
    if rec.get("status") not in TESTABLE:
        raise RunLogError(f"run {rec['id']} ({rec.get('name')}) is {rec.get('status')!r}; only"
                          f" {', '.join(TESTABLE)} runs can be tested")
    if limit is not None and limit < 1:
        raise ConfigError("limit", f"expected a positive number of images, got {limit}", limit)
    model, rec = load_classifier(rec["id"], log)
    cmd = model.command
    stored_root = (rec.get("dataset") or {}).get("root") or cmd.data
    root = Path(data or stored_root).expanduser().resolve()
    split_file = Path(rec["dir"]) / "split.json"
    if stored_root and root == Path(stored_root).resolve() and split_file.is_file():
        split = json.loads(split_file.read_text(encoding="utf-8"))
        source = "held-out test split"
    else:
        _, samples = scan_folder(root, model.classes, cmd.label_map)
        split = {"train": [], "val": [], "test": [r for r, _ in samples]}
        source = "all images of the folder"
    dm = ImageFolderDataModule(root, cmd, split=split, classes=model.classes)
    if not dm.split.get("test"):
        raise ConfigError("split.test", f"run {rec['id']} has no test images (split.test = {cmd.split.test})",
                          cmd.split.test)
    dm.test_limit = limit
    n_test = len(dm.dataset("test", limit))
    run = log.handle(rec["id"])
    test_config = {"data": str(root), "source": source, "limit": limit, "n_test": n_test,
                   "checkpoint": (rec.get("artifacts") or {}).get("checkpoint")}
    run.set_status("testing", test_config=test_config)
    try:
        accel = cmd.trainer.accelerator
        trainer = pl.Trainer(logger=False, accelerator=accel, devices=1, enable_progress_bar=progress,
                             enable_model_summary=False, enable_checkpointing=False)
        trainer.test(model, datamodule=dm, verbose=False)
        res = dict(model.test_results or {})
    except BaseException as exc:
        run.finish("failed" if isinstance(exc, Exception) else "stopped", error=_error_text(exc))
        raise
    k = res.get("top_k", 1)
    summary = {"test_accuracy": res["accuracy"], f"test_top{k}_accuracy": res["top_k_accuracy"],
               "per_class_accuracy": res["per_class_accuracy"], "confusion_matrix": res["confusion_matrix"],
               "classes": res["classes"], "n_test": res["n_test"]}
    (Path(rec["dir"]) / "test_report.json").write_text(json.dumps({**res, "test_config": test_config}),
                                                       encoding="utf-8")
    arts = dict(rec.get("artifacts") or {})
    arts["test_report"] = "test_report.json"
    run.finish("completed", summary=summary, artifacts=arts)
    return {"run_id": rec["id"], "status": "completed", "summary": summary, "error": None}


# -- background jobs ------------------------------------------------------------------------

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
        return self.log._raw(self.run_id)["status"]

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
        if self.mode == "thread":
            h = self.log._handles.get(self.run_id)
            if h is not None:
                h.flush()
        return self.log.read_metrics(self.run_id)

    def epochs(self) -> list[dict[str, Any]]:
        """End-of-epoch rows (``val_loss``, ``val_accuracy``) so far."""
        return list(self.log._raw(self.run_id).get("epochs") or [])

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
        rec = self.log._raw(self.run_id)
        if rec["status"] in ACTIVE:
            try:
                self.log.set_status(self.run_id, "crashed", error=f"crashed: job process exited with code {rc};"
                                    f" see {Path(rec['dir']) / 'job.log'}")
            except RunLogError:
                pass
            rec = self.log._raw(self.run_id)
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
        handle.error = _error_text(exc)
        try:
            rec = handle.log._raw(handle.run_id)
            if rec["status"] in ACTIVE:
                handle.log.set_status(handle.run_id, "failed", error=handle.error)
            status = handle.log._raw(handle.run_id)["status"]
        except Exception:
            status = "failed"
        handle._finish({"run_id": handle.run_id, "status": status, "summary": {}, "error": handle.error,
                        "traceback": traceback.format_exc()})
        return
    handle._finish(_as_result(res, handle.log, handle.run_id))


def _spawn(args: list[str], run_dir: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    run_dir.mkdir(parents=True, exist_ok=True)
    out = open(run_dir / "job.log", "ab")
    # start_new_session: Ctrl-C in the kernel must not reach the job; it has its own stop file.
    return subprocess.Popen([sys.executable, "-m", "workbench", *args], stdout=out, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)


def start_training(command: TrainingCommand | Mapping[str, Any] | str | Path, data: str | Path | None = None, *,
                   name: str | None = None, tags: Iterable[str] = (), log: RunLog | None = None,
                   mode: str = "auto", callbacks: Iterable[Any] = ()) -> JobHandle:
    """Validate a command, create its run and train it in the background; returns at once.

    A command that fails validation raises :class:`~workbench.config.ConfigError` and
    creates no run. ``mode``: ``"auto"`` (thread, or subprocess for multi-process
    strategies), ``"thread"`` or ``"subprocess"``. ``callbacks``: extra Lightning callbacks
    (thread jobs only: a subprocess cannot receive Python objects).
    """
    if mode not in ("auto", "thread", "subprocess"):
        raise ValueError(f"mode {mode!r} is not one of auto, thread, subprocess")
    callbacks = list(callbacks)
    d = command_dict(command)
    log = log or RunLog()
    kind = d.get("kind", "baseline")
    if kind in FEWSHOT_KINDS:
        from .learners import fewshot  # imported only for these kinds

        parse = getattr(fewshot, "parse_command", None)
        if parse is not None:
            parse(d)  # a bad command fails here, before a run exists
        run = log.start(name or d.get("name") or kind, kind, d, tags=tags, status="queued")
        flag = StopFlag(run.dir)
        h = JobHandle(run.id, log, "train", "thread", flag)
        h._thread = threading.Thread(target=_run_thread, name=f"workbench-train-{run.id}", daemon=True, args=(
            h, lambda: fewshot.train_from_command(d, data=data, log=log, run=run, stop_event=flag.event,
                                                  **({"callbacks": callbacks} if callbacks else {}))))
        h._thread.start()
        return h
    cmd, dm = prepare(d, data)
    cfg = cmd.to_dict()
    if mode == "auto":
        mode = "subprocess" if needs_processes(cmd) else "thread"
    if callbacks and mode == "subprocess":
        raise ValueError("callbacks need a thread job; this command runs as a subprocess"
                         " (multi-process strategy or mode='subprocess')")
    run = log.start(name or cmd.name or default_name(cmd), "baseline", cfg, tags=tags, status="queued",
                    dataset=dm.info(), seed=cmd.seed)
    flag = StopFlag(run.dir)
    h = JobHandle(run.id, log, "train", mode, flag)
    if mode == "thread":
        h._thread = threading.Thread(target=_run_thread, name=f"workbench-train-{run.id}", daemon=True, args=(
            h, lambda: run_training(cmd, log=log, run=run, stop=flag, prepared=(cmd, dm), callbacks=callbacks)))
        h._thread.start()
    else:
        cfg_path = run.dir / "command.json"
        cfg_path.write_text(json.dumps(cfg, indent=1), encoding="utf-8")
        h._proc = _spawn(["train", "--config", str(cfg_path), "--run-id", run.id, "--db", str(log.path),
                          "--no-progress"], run.dir)
        _watch(h)
    return h


def _watch(h: JobHandle) -> None:
    """A daemon thread that notices when a subprocess job ends (so listeners fire)."""
    def watch() -> None:
        assert h._proc is not None
        h._proc.wait()
        h._finish_subprocess()

    threading.Thread(target=watch, name=f"workbench-watch-{h.run_id}", daemon=True).start()


def start_test(run_ref: str, data: str | Path | None = None, *, limit: int | None = None,
               log: RunLog | None = None, mode: str = "thread") -> JobHandle:
    """Test a trained run (id, id prefix or name) in the background; returns at once."""
    log = log or RunLog()
    rid = log.resolve(run_ref)
    rec = log._raw(rid)
    if rec.get("status") not in TESTABLE:
        raise RunLogError(f"run {rid} ({rec.get('name')}) is {rec.get('status')!r}; only"
                          f" {', '.join(TESTABLE)} runs can be tested")
    flag = StopFlag(None)
    h = JobHandle(rid, log, "test", mode, flag)
    if mode == "thread":
        h._thread = threading.Thread(target=_run_thread, name=f"workbench-test-{rid}", daemon=True, args=(
            h, lambda: run_test(rid, data, limit=limit, log=log)))
        h._thread.start()
    else:
        args = ["test", rid, "--db", str(log.path)]
        if limit is not None:
            args += ["--limit", str(limit)]
        if data is not None:
            args += ["--data", str(data)]
        h._proc = _spawn(args, Path(rec["dir"]))
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


def test(run_ref: str, data: str | Path | None = None, *, limit: int | None = None,
         log: RunLog | None = None, progress: bool = False) -> dict[str, Any]:
    """Test synchronously (the CLI's ``test``)."""
    return run_test(run_ref, data, limit=limit, log=log, progress=progress)


test.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported into a test module
