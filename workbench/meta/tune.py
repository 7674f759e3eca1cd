"""``tune()``: an Optuna search over training commands whose memory is the run log.

    from workbench.meta import tune
    result = tune("~/data/shapes", budget="120 epochs")     # warm start + learned pruner
    result.best            # {"params", "value", "run_id", "test_accuracy"}
    result.anytime()       # best-so-far after each trial vs epochs trained

- Every trial is a workbench training run (``workbench.jobs.run_training``) in the run log, tagged
  ``study:<name>`` and ``trial:<n>``, tested on its held-out split (``run_test``) so it has a
  test score (pruned runs are not tested: they stay ``stopped``), and stored with the task's meta-features (``task`` field) so it becomes memory
  for the next task. The trial's value is its mean validation accuracy over the last 3 epochs.
- :class:`~workbench.meta.pruning.TrialCallback` reports ``val_accuracy`` per epoch; a pruned run
  stops (status ``stopped``) and its record's ``pruned`` field says at which epoch, at what value,
  against which reference and by which pruner.
- ``budget``: ``"20 trials"``, ``"240 epochs"``, ``"600 s"`` / ``"10 min"`` (an int = trials), for
  the whole study (a resumed study counts what it already ran).
- A command already trained in the study is never trained again: the repeat is answered from the
  study (no epochs, not counted as a trial); after two repeats in a row on a categorical space
  an untried grid point is enqueued, so a sampler that keeps proposing what it knows cannot stall.
- ``workers=N`` runs N processes on one study: an Optuna journal file on this machine (default
  ``$WORKBENCH_HOME/studies/<name>.journal``), or ``storage="postgresql://…"`` (any RDB URL)
  when several machines share it. Each trial is still a run in the shared run log.
- Warm start (:mod:`workbench.meta.warmstart`) from the past tasks of ``history`` (default: this
  run log plus the shipped meta-dataset, package data found wherever the package is installed;
  its runs count where they fit the space); learned pruner (:mod:`workbench.meta.pruning`)
  trained on the same history, with the new task's nearest past tasks as its memory.
  ``notes`` always says which memory was used and how many past tasks and runs it held.
"""
from __future__ import annotations

import copy
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..runlog import RunLog
from .common import stable_hash
from .replay import SHIPPED_METADATASET, trial_value
from .space import SearchSpace, SpaceError, load_space
from .study import (anytime_curve, check_trial_budget, memory_of, own_trials as _own, progress_line, pruned_trials,
                    study_storage, trials_frame)

__all__ = ["Budget", "TuneResult", "tune", "anytime_curve", "trials_frame", "pruned_trials", "study_storage",
           "SHIPPED_METADATASET", "PRUNERS", "SAMPLERS"]

PRUNERS = ("learned", "median", "hyperband", "none")
SAMPLERS = ("tpe", "random", "grid")
_UNITS = {"trials": "trials", "trial": "trials", "t": "trials", "epochs": "epochs", "epoch": "epochs",
          "e": "epochs", "s": "seconds", "sec": "seconds", "seconds": "seconds", "min": "seconds",
          "m": "seconds", "h": "seconds"}
_SCALE = {"min": 60, "m": 60, "h": 3600}


@dataclass(frozen=True)
class Budget:
    """How much a study may spend: ``amount`` trials, epochs or seconds."""

    kind: str
    amount: float

    @classmethod
    def parse(cls, spec: Any) -> "Budget":
        """``20`` / ``"20 trials"`` / ``"240 epochs"`` / ``"600s"`` / ``"10 min"`` / ``Budget``."""
        if isinstance(spec, Budget):
            return spec
        if isinstance(spec, bool):
            raise ValueError(f"budget = {spec!r}: expected e.g. 20, '20 trials', '240 epochs' or '10 min'")
        if isinstance(spec, int):
            spec = f"{spec} trials"
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(spec))
        unit = (m.group(2).lower() or "trials") if m else None
        if m is None or unit not in _UNITS:
            raise ValueError(f"budget = {spec!r}: expected a number with a unit: trials, epochs, s, min or h "
                             "(e.g. '20 trials', '240 epochs', '10 min')")
        amount = float(m.group(1)) * _SCALE.get(unit, 1)
        kind = _UNITS[unit]
        if amount <= 0 or (kind != "seconds" and amount != int(amount)):
            raise ValueError(f"budget = {spec!r}: expected a positive {'whole ' if kind != 'seconds' else ''}"
                             f"number of {kind}")
        return cls(kind, amount)

    def __str__(self) -> str:
        return f"{self.amount:g} {self.kind}"


@dataclass
class TuneResult:
    """A finished (or stopped) study and where to look."""

    name: str
    study: Any
    space: SearchSpace
    warm_start: Any = None
    pruner_note: str = ""
    log_path: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def best(self) -> dict | None:
        """The best finished own trial: params, value, run id and its test accuracy."""
        import optuna

        done = [t for t in _own(self.study, (optuna.trial.TrialState.COMPLETE,)) if t.value is not None]
        if not done:
            return None
        t = max(done, key=lambda t: t.value)
        return {"trial": t.number, "params": dict(t.params), "value": t.value, "run_id": t.user_attrs.get("run_id"),
                "test_accuracy": t.user_attrs.get("test_accuracy")}

    def trials(self):
        """See :func:`trials_frame`."""
        return trials_frame(self.study)

    def anytime(self):
        """See :func:`anytime_curve`."""
        return anytime_curve(self.study)

    def pruned(self):
        """See :func:`pruned_trials`."""
        return pruned_trials(self.study)

    def importance(self, evaluator: Any = None) -> dict[str, float]:
        """Optuna's parameter importance (fANOVA by default) over own finished trials."""
        import optuna

        own = optuna.create_study(direction="maximize")
        own.add_trials([t for t in _own(self.study, (optuna.trial.TrialState.COMPLETE,))])
        return optuna.importance.get_param_importances(own, evaluator=evaluator)

    @property
    def epochs(self) -> int:
        """Epochs trained by own trials."""
        return sum(int(t.user_attrs.get("epochs", 0)) for t in _own(self.study))


# -- the objective ----------------------------------------------------------------------------

def default_base(epochs: int = 10) -> dict[str, Any]:
    """The command every trial starts from (``TrainingCommand`` defaults, CPU, ``epochs`` epochs)."""
    from ..config import TrainingCommand

    base = TrainingCommand().to_dict()
    base.update({"epochs": epochs, "model": {"preset": "small_cnn", "params": {"hidden": 32}}})
    base["trainer"].update({"accelerator": "cpu", "devices": 1})
    return base


def _check_space(space: SearchSpace, base: Mapping[str, Any], n_labels: int) -> None:
    """Dry-run one command per choice / range end (conditions satisfied): errors name the key."""
    from ..config import ConfigError, TrainingCommand

    space.check_base(base)
    for p in space:
        values = list(p.choices) if p.type == "categorical" else [p.low, p.high]
        for v in values:
            params = {ck: vals[0] for ck, vals in p.when.items()}
            params[p.key] = v
            try:
                TrainingCommand.from_dict(space.apply(base, params)).validate(n_labels)
            except ConfigError as exc:
                raise SpaceError(p.key, f"value {v!r} makes an invalid command: {exc}") from None


@dataclass
class _Spec:
    """Everything a worker process needs to run trials of one study (picklable)."""

    name: str
    data: str
    space: dict
    base: dict
    storage: str | None
    log_path: str
    budget: Budget
    sampler: str
    seed: int
    pruner: str
    model: Any
    epochs: int
    test: bool
    task: dict | None
    started: float
    workers: int = 1
    memory: Any = None
    progress: bool = False


def _make_sampler(spec: _Spec, space: SearchSpace, worker: int):
    import optuna

    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed + worker)
    if spec.sampler == "grid":
        return optuna.samplers.GridSampler(space.grid_search_space(), seed=spec.seed)
    return optuna.samplers.TPESampler(seed=spec.seed + worker, constant_liar=True)


def _make_pruner(spec: _Spec):
    import optuna

    from .pruning import LearnedPruner

    if not isinstance(spec.pruner, str):  # an Optuna pruner object given by the caller
        return spec.pruner
    if spec.pruner == "learned" and spec.model is not None:
        return LearnedPruner(spec.model, max_epochs=spec.epochs, memory=spec.memory)
    if spec.pruner in ("median", "learned"):  # learned without history falls back (said in the notes)
        return optuna.pruners.MedianPruner(n_startup_trials=3)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=spec.epochs, reduction_factor=3)
    return optuna.pruners.NopPruner()


def _spent(study: Any, spec: _Spec) -> float:
    own = _own(study)
    if spec.budget.kind == "trials":
        import optuna

        counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING)
        return sum(t.state in counted and "repeat_of" not in t.user_attrs for t in own)  # a repeat trains nothing
    if spec.budget.kind == "epochs":
        return sum(int(t.user_attrs.get("epochs", 0)) for t in own)
    return time.time() - spec.started


def _objective(spec: _Spec, space: SearchSpace, log: RunLog):
    import optuna

    from .. import jobs
    from .pruning import TrialCallback

    grid = space.grid() if all(p.type == "categorical" for p in space) else None
    repeats = [0]

    def objective(trial: Any) -> float:
        check_trial_budget(trial, spec.budget.kind, spec.budget.amount)
        params = space.suggest(trial)
        key = space.key_of(params)
        done = _own(trial.study, (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
        for t in done:
            if t.user_attrs.get("key") == key and t.number != trial.number:  # never train a command twice
                trial.set_user_attr("repeat_of", t.number)
                trial.set_user_attr("key", key)
                trial.set_user_attr("epochs", 0)
                repeats[0] += 1
                if repeats[0] >= 2 and grid:  # the sampler keeps proposing what it knows: try something new
                    tried = {x.user_attrs.get("key") for x in done}
                    untried = [g for g in grid if space.key_of(g) not in tried]
                    if untried:
                        trial.study.enqueue_trial(untried[(spec.seed + trial.number) % len(untried)])
                    repeats[0] = 0
                if t.state == optuna.trial.TrialState.PRUNED:
                    raise optuna.TrialPruned(f"same command as pruned trial {t.number}")
                return float(t.value)
        repeats[0] = 0
        trial.set_user_attr("key", key)
        cmd = space.apply(spec.base, params)
        flag = jobs.StopFlag()
        cb = TrialCallback(trial, flag)
        tags = [f"study:{spec.name}", f"trial:{trial.number}", "tune"]
        res = jobs.run_training(cmd, spec.data, log=log, name=f"{spec.name}/trial {trial.number:03d}", tags=tags,
                                stop=flag, callbacks=[cb])
        rid = res["run_id"]
        trial.set_user_attr("run_id", rid)
        trial.set_user_attr("epochs", len(cb.values))
        info: dict[str, Any] = {"tune": {"study": spec.name, "trial": trial.number, "params": params}}
        if spec.task:
            info["task"] = spec.task
        if cb.pruned and cb.record is not None:
            info["pruned"] = {"epoch": cb.record.epoch, "value": cb.record.value, "reference": cb.record.reference,
                              "pruner": cb.record.pruner}
            trial.set_user_attr("pruned_epoch", cb.record.epoch)
        log.handle(rid).update(**info)
        if spec.test and not cb.pruned:  # a pruned run stays `stopped` (its stop point is the record)
            test = jobs.run_test(rid, log=log)
            trial.set_user_attr("test_accuracy", test["summary"].get("test_accuracy"))
        if cb.pruned:
            raise optuna.TrialPruned(f"pruned at epoch {cb.record.epoch if cb.record else '?'}")
        return trial_value(cb.values)

    return objective


def _run_worker(spec: _Spec, worker: int = 0, ready: Any = None, stop: Any = None) -> None:
    """Run trials of the study until the budget is spent (the body of every worker process).

    ``ready`` (a barrier) holds every worker until all have imported torch and loaded the study,
    so a fast starter does not take the whole budget before the others arrive.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if worker:  # a spawned worker: one intra-op thread each (cores are shared)
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // spec.workers))
    space = SearchSpace.from_dict(spec.space)
    study = optuna.load_study(study_name=spec.name, storage=study_storage(spec.storage, spec.name),
                              sampler=_make_sampler(spec, space, worker), pruner=_make_pruner(spec))
    log = RunLog(spec.log_path)

    def stop_when_spent(st: Any, _t: Any) -> None:
        if _spent(st, spec) >= spec.budget.amount or (stop is not None and stop.is_set()):
            st.stop()

    if ready is not None:
        try:
            ready.wait(timeout=300)
        except Exception:  # a worker that died starting: the others go on
            pass
    if _spent(study, spec) >= spec.budget.amount:
        return
    timeout = spec.budget.amount - (time.time() - spec.started) if spec.budget.kind == "seconds" else None
    callbacks = [stop_when_spent]
    if spec.progress:
        callbacks.append(progress_line(spec.name, spec.budget.kind, spec.budget.amount, lambda st: _spent(st, spec)))
    study.optimize(_objective(spec, space, log), timeout=timeout, callbacks=callbacks, catch=(Exception,))



# -- the public entry point -----------------------------------------------------------------------

def _learned_pruner(hist: Any, feats: Mapping[str, Any]) -> tuple[Any, Any, str]:
    """The learned pruner's model and the new task's memory (``None`` with fewer than 2 past tasks), and a note."""
    from .pruning import fitted_model

    if len(hist) < 2:
        return None, None, "learned pruner: fewer than 2 past tasks with curves; MedianPruner instead"
    model = fitted_model(hist)
    memory = model.memory_for(feats)
    return model, memory, (f"learned pruner: trained on {model.n_curves} curves of {model.n_tasks} past tasks "
                           f"(mean threshold {model.threshold:.2f}); memory: "
                           f"{', '.join(memory.names) if memory else 'none'}")


def _checked(data: Any, space: Any, budget: Any, base: Mapping[str, Any] | None, pruner: Any, sampler: str,
             workers: int, epochs: int | None) -> tuple[Budget, Path, SearchSpace, dict]:
    """Everything that can be wrong with a call fails here, before a study or a run exists."""
    from ..data.imagefolder import scan_folder

    budget = Budget.parse(budget)
    if isinstance(pruner, str) and pruner not in PRUNERS:
        raise ValueError(f"pruner = {pruner!r}: expected one of {', '.join(PRUNERS)}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler = {sampler!r}: expected one of {', '.join(SAMPLERS)}")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers = {workers!r}: expected a positive whole number of processes")
    root = Path(data).expanduser().resolve()
    if not root.is_dir():
        raise ValueError(f"data = {str(data)!r}: no such folder")
    classes, _ = scan_folder(root)
    sp = load_space(space)
    base_cmd = copy.deepcopy(dict(base)) if base is not None else default_base()
    if epochs is not None:
        base_cmd["epochs"] = int(epochs)
    base_cmd.pop("data", None)
    _check_space(sp, base_cmd, len(classes))
    if sampler == "grid":
        sp.grid_search_space()
    return budget, root, sp, base_cmd


def tune(data: str | os.PathLike, space: Any = None, budget: Any = "20 trials", base: Mapping[str, Any] | None = None,
         *, name: str | None = None, log: RunLog | None = None, history: Any = "auto", warm_start: bool = True,
         pruner: Any = "learned", sampler: str = "tpe", workers: int = 1, storage: str | None = None, seed: int = 0,
         test: bool = True, k: int = 3, n_enqueue: int = 3, priors: bool = False,
         epochs: int | None = None, stop: Any = None, progress: bool = False) -> TuneResult:
    """Tune a training command for the image folder ``data`` (see the module docstring).

    Args:
        data: the dataset folder (``DIR/<class>/<image>``).
        space: a :class:`SearchSpace`, its dict, a JSON file, or ``None`` for the default space.
        budget: trials, epochs or seconds for the whole study (see :class:`Budget`).
        base: the command trials start from (default :func:`default_base`); ``epochs`` overrides its epochs.
        name: the study's name (default: derived from data, space, base, sampler, pruner, seed and warm
            start, so the same call again resumes the same study).
        history: past runs to learn from: ``"auto"`` (run log + shipped meta-dataset), a RunLog,
            an export file, a MetaDataset, or ``None`` (no memory: cold search, Median pruner).
        warm_start: enqueue the nearest tasks' best configurations (``n_enqueue`` of them, ``k`` neighbours).
        priors: also add the neighbours' runs as prior trials (off: the ablation in the README found
            no gain, and a loss on one task).
        pruner: ``learned`` | ``median`` | ``hyperband`` | ``none``, or an Optuna pruner object.
        sampler: ``tpe`` | ``random`` | ``grid`` (grid needs a categorical space).
        workers: processes running trials of this study at once.
        storage: an RDB URL (``postgresql://…``, ``sqlite:///…``) or a journal file path.
        test: test every trial on its held-out split.
        stop: a ``threading.Event``; once set, no new trial starts (the one running finishes). One worker only.
        progress: print one line per finished trial to stderr (the CLI's progress; every worker prints its own).
    """
    import optuna

    from .features import task_features

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budget, root, sp, base_cmd = _checked(data, space, budget, base, pruner, sampler, workers, epochs)
    log = log or RunLog()
    ident = {"space": sp.to_dict(), "base": base_cmd, "data": str(root), "sampler": sampler, "seed": seed,
             "pruner": pruner if isinstance(pruner, str) else type(pruner).__name__, "warm_start": warm_start,
             "priors": priors}
    name = name or f"{'sweep' if sampler != 'tpe' else 'tune'}-{root.name}-{stable_hash(ident, 8)}"
    storage_obj = study_storage(storage, name)
    study = optuna.create_study(study_name=name, storage=storage_obj, direction="maximize", load_if_exists=True)
    feats = task_features(root)
    task = {"path": str(root), "name": root.name, "fingerprint": feats["fingerprint"], "features": feats}
    result = TuneResult(name, study, sp, log_path=str(log.path))
    hist, memory_note = memory_of(history if (warm_start or pruner == "learned") else None, sp, log, name)
    result.notes.append(memory_note)
    model = memory = None
    if pruner == "learned":
        model, memory, result.pruner_note = _learned_pruner(hist, feats)
        result.notes.append(result.pruner_note)
    if warm_start and not study.trials:
        from .warmstart import warm_start as _ws

        ws = _ws(feats, hist, k=k, n_configs=n_enqueue, prior=priors)
        result.warm_start = ws
        result.notes.append(ws.reason)
        if not ws.cold:
            if ws.prior_trials:
                study.add_trials(ws.prior_trials)
            for p in ws.enqueue():
                study.enqueue_trial(p)
    spec = _Spec(name, str(root), sp.to_dict(), base_cmd, storage, str(log.path), budget, sampler, seed, pruner,
                 model, int(base_cmd.get("epochs", 10)), test, task, time.time(), workers, memory, progress)
    if workers == 1:
        _run_worker(spec, 0, stop=stop)
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        ready = ctx.Barrier(workers)
        procs = [ctx.Process(target=_run_worker, args=(spec, i + 1, ready), daemon=False) for i in range(workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    result.study = optuna.load_study(study_name=name, storage=study_storage(storage, name))
    return result
