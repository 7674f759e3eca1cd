"""Runs gone bad: the learned pruner's model watching one training run, no study needed.

There is one early-stopping model in the workbench, :class:`workbench.meta.pruning.CurveModel`
(trained on the stored learning curves of past tasks, calibrated out of task). The tuner asks it
"will this trial end at or below the study's best?"; :class:`GoneBadCallback` asks the same model
about a single run, against the references a single run has:

- ``diverged``: the training loss (checked every step) or the validation value is NaN/inf —
  nothing to predict, the run is stopped at once;
- ``flat``: after a validation epoch, the model says the run will very likely end at or below
  its *flat line* (chance plus :data:`~workbench.meta.pruning.FLAT_SHARE` of the way to a perfect
  score: it learned next to nothing);
- ``worse_than_best``: the model says it will very likely end at or below the reference run — by
  default the best finished run on the same dataset (same fingerprint) in the run log; or a run
  id, a tag (``sweep:<name>``, ``study:<name>``: its best finished run) or a curve.

"Very likely" is the model's calibrated per-epoch threshold, the tuner's own. The default model
is fitted (once per process) on the shipped meta-dataset's curves with the flat line as an extra
reference and curve features only (:func:`default_model`). The callback stops the run (or only
flags it: ``stop_on``) and records the verdict in the run record (``gone_bad`` field: call, step,
epoch, reason, probability, threshold, action; a ``gone-bad:<call>`` tag). :func:`train_watched`
trains a command under it through :func:`workbench.jobs.run_training`; a stopped run ends
``stopped`` with its checkpoint.

How good the model's calls are is measured where it is trained: the pruner comparison of
``benchmarks/bench_tune.py`` (the README's tuning results) — there is no second evaluation.
Replaces the hand-tuned ``GoneBadDetector`` (loss-ratio thresholds, a "worse than median" rule
that was Optuna's MedianPruner written again) and its ``evaluate_detector``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import pytorch_lightning as pl

from ..runlog import RunLog
from .pruning import FLAT_SHARE, CurveModel, fitted_model
from .replay import trial_value

__all__ = ["CALLS", "Verdict", "GoneBadCallback", "train_watched", "default_model"]

CALLS = ("ok", "diverged", "flat", "worse_than_best")


def default_model() -> CurveModel:
    """The gone-bad model: curve features and the flat line, fitted on the shipped meta-dataset (cached)."""
    from .replay import SHIPPED_METADATASET, MetaDataset

    if not SHIPPED_METADATASET.is_file():
        raise FileNotFoundError(f"the shipped meta-dataset is missing at {SHIPPED_METADATASET}; pass model=")
    return fitted_model(MetaDataset.load(SHIPPED_METADATASET), memory=False, flat_line=True)


@dataclass
class Verdict:
    """A call on a run: ``call`` (one of :data:`CALLS`), the step and epoch it was made at, and why."""

    call: str
    step: int
    reason: str
    planned_steps: int | None = None
    epoch: int | None = None
    probability: float | None = None
    threshold: float | None = None
    details: dict = field(default_factory=dict)

    @property
    def bad(self) -> bool:
        """True for every call but ``ok``."""
        return self.call != "ok"

    def to_dict(self) -> dict:
        """JSON-ready form stored in the run record."""
        return asdict(self)


class GoneBadCallback(pl.Callback):
    """Lightning callback: stop or flag a run the learned model calls gone bad; record why.

    Args:
        model: a fitted :class:`CurveModel` (default :func:`default_model`, fitted on first use).
        stop_on: calls that stop training; other bad calls only flag.
        reference: ``"auto"`` (best finished run on the same dataset in the run log), ``None``
            (the flat line only), a run id, a tag, or a validation curve.
        planned_steps: override Lightning's ``estimated_stepping_batches`` (recorded with the call).
        run: the run to record into (handle or id) when the trainer has no ``WorkbenchLogger``.
        log: run log for ``reference`` look-ups and ``run`` ids.
        monitor: the per-epoch validation value the model reads.

    After training, ``verdict`` holds the last call (``ok`` once an epoch was judged healthy).
    """

    def __init__(self, model: CurveModel | None = None, stop_on: Sequence[str] = ("diverged", "flat"),
                 reference: Any = "auto", planned_steps: int | None = None, run: Any = None,
                 log: RunLog | None = None, monitor: str = "val_accuracy") -> None:
        super().__init__()
        bad = [s for s in stop_on if s not in CALLS or s == "ok"]
        if bad:
            raise ValueError(f"stop_on: {bad} not allowed; choose from {', '.join(CALLS[1:])}")
        if model is not None and not isinstance(model, CurveModel):
            raise ValueError(f"model = {model!r}: expected a fitted CurveModel (workbench.meta.pruning)")
        self._model = model
        self.stop_on = tuple(stop_on)
        self._reference_spec = reference
        self.planned_steps = planned_steps
        self._run = run
        self._log = log
        self.monitor = monitor
        self.steps = 0
        self.values: list[float] = []
        self.verdict: Verdict | None = None
        self.stopped = False
        #: a workbench.jobs.StopFlag to set when stopping (train_watched wires it)
        self.stop_flag: Any = None
        self._reference: tuple[float, list[float], str] | None | bool = False  # False: not looked up yet

    @property
    def model(self) -> CurveModel:
        """The model the calls come from (fitted on first use)."""
        if self._model is None:
            self._model = default_model()
        return self._model

    # -- what the run is compared with --------------------------------------------------------
    def reference_run(self, trainer: Any = None) -> tuple[float, list[float], str] | None:
        """(value, validation curve, description) of the reference run, or ``None`` (flat line only)."""
        if self._reference is False:
            self._reference = self._find_reference(trainer)
        return self._reference  # type: ignore[return-value]

    def _find_reference(self, trainer: Any) -> tuple[float, list[float], str] | None:
        spec = self._reference_spec
        if spec is None:
            return None
        if not isinstance(spec, str):  # a curve
            curve = [float(v) for v in spec]
            return (trial_value(curve), curve, "the given curve") if curve else None
        log = self._run_log(trainer)
        if log is None:
            return None
        me = self._target_run(trainer)
        my_id = getattr(me, "id", None)
        if spec == "auto":
            fp = ((log.get(my_id, metrics=False).get("dataset") or {}).get("fingerprint")) if my_id else None
            if not fp:
                return None
            cands = [r for r in log.find(status=["trained", "completed"])
                     if (r.get("dataset") or {}).get("fingerprint") == fp and r["id"] != my_id]
            what = "the best finished run on this dataset"
        elif ":" in spec:
            cands = [r for r in log.find(tag=spec, status=["trained", "completed"]) if r["id"] != my_id]
            what = f"the best finished run tagged {spec}"
        else:
            cands = [log.get(spec, metrics=False)]
            what = f"run {spec}"
        best = None
        for r in cands:
            curve = [float(e[self.monitor]) for e in sorted(log.get(r["id"], metrics=False).get("epochs") or [],
                                                             key=lambda e: e.get("epoch", 0)) if self.monitor in e]
            if curve and (best is None or trial_value(curve) > best[0]):
                best = (trial_value(curve), curve, f"{what} ({r['id']})")
        return best

    def _run_log(self, trainer: Any) -> RunLog | None:
        run = self._target_run(trainer)
        return getattr(run, "log", None) or self._log

    def _target_run(self, trainer: Any):
        from ..runlog.lightning import WorkbenchLogger

        for lg in getattr(trainer, "loggers", []) or []:
            if isinstance(lg, WorkbenchLogger):
                return lg.experiment
        if self._run is None:
            return None
        if isinstance(self._run, str):
            self._run = (self._log or RunLog()).handle(self._run)
        return self._run

    def _n_classes(self, trainer: Any, pl_module: Any) -> int | None:
        classes = (getattr(pl_module, "hparams", None) or {}).get("classes")
        if classes:
            return len(classes)
        run = self._target_run(trainer)
        if run is not None:
            ds = run.log.get(run.id, metrics=False).get("dataset") or {}
            if ds.get("classes"):
                return len(ds["classes"])
        return None

    def _planned(self, trainer: Any) -> int:
        if self.planned_steps:
            return int(self.planned_steps)
        est = getattr(trainer, "estimated_stepping_batches", None)
        if isinstance(est, (int, float)) and math.isfinite(est) and est > 0:
            return int(est)
        return max(self.steps * 5, 1)

    # -- Lightning hooks -----------------------------------------------------------------------
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        self.steps += 1
        if loss is None or self.stopped:
            return
        try:
            value = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
        except (TypeError, ValueError):
            return
        if not math.isfinite(value):
            self._act(trainer, Verdict("diverged", self.steps - 1, f"training loss is {value} at step {self.steps - 1}",
                                       self._planned(trainer), int(trainer.current_epoch)))

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if getattr(trainer, "sanity_checking", False) or self.stopped:
            return
        v = trainer.callback_metrics.get(self.monitor)
        if v is None:
            return
        value = float(v)
        self.values.append(value)
        step, epoch, planned = max(self.steps - 1, 0), int(trainer.current_epoch), self._planned(trainer)
        if not math.isfinite(value):
            self._act(trainer, Verdict("diverged", step, f"{self.monitor} is {value} after epoch {epoch}", planned,
                                       epoch))
            return
        max_epochs = int(getattr(trainer, "max_epochs", 0) or 0)
        if max_epochs < 2 or len(self.values) >= max_epochs:
            return
        self._judge(trainer, pl_module, step, epoch, planned, max_epochs)

    def _judge(self, trainer: Any, pl_module: Any, step: int, epoch: int, planned: int, max_epochs: int) -> None:
        """Ask the model against the flat line, then against the reference run."""
        m = self.model
        threshold = m.threshold_at(len(self.values), max_epochs)
        n_classes = self._n_classes(trainer, pl_module)
        checks = []
        if n_classes:
            flat, curve = m.flat_reference(n_classes, max_epochs)
            checks.append(("flat", flat, curve, f"its flat line {flat:.3f} (chance 1/{n_classes} plus "
                                                f"{FLAT_SHARE:g} of the way to 1)"))
        ref = self.reference_run(trainer)
        if ref is not None:
            checks.append(("worse_than_best", ref[0], ref[1], f"{ref[2]}, which ended at {ref[0]:.3f}"))
        fired = []
        for call, value, curve, what in checks:
            p = m.prob_worse(self.values, value, curve, max_epochs)
            if p >= threshold:
                fired.append(Verdict(call, step, f"P(ends at or below {what}) = {p:.2f} ≥ {threshold:.2f} after "
                                                 f"epoch {epoch} of {max_epochs} ({self.monitor} "
                                                 f"{self.values[-1]:.3f})", planned, epoch, p, threshold,
                                     {"reference": value}))
        if fired:  # a call that stops wins over one that only flags; a flag already recorded is not repeated
            verdict = next((v for v in fired if v.call in self.stop_on), fired[0])
            if verdict.call in self.stop_on or self.verdict is None or self.verdict.call != verdict.call:
                self._act(trainer, verdict)
        elif self.verdict is None:  # the first healthy epoch is recorded once, so a record says it was watched
            self.verdict = Verdict("ok", step, f"{self.monitor} {self.values[-1]:.3f} after epoch {epoch}: not "
                                               "called", planned, epoch, None, threshold)
            self._record(trainer, self.verdict, "none")

    def _record(self, trainer: Any, verdict: Verdict, action: str) -> None:
        run = self._target_run(trainer)
        if run is None:
            return
        info = verdict.to_dict()
        info["action"] = action
        try:
            tags = list(run.log.get(run.id, metrics=False).get("tags") or [])
            extra = {f"gone-bad:{verdict.call}"} if verdict.bad else set()
            run.update(gone_bad=info, planned_steps=verdict.planned_steps, tags=sorted(set(tags) | extra))
        except Exception:  # recording must never break training
            pass

    def _act(self, trainer: Any, v: Verdict) -> None:
        self.verdict = v
        action = "stopped" if v.call in self.stop_on else "flagged"
        if action == "stopped":
            trainer.should_stop = True
            self.stopped = True
            if self.stop_flag is not None:  # lets workbench.jobs end the run `stopped`, not `trained`
                self.stop_flag.set()
        self._record(trainer, v, action)


def train_watched(command: Any, data: str | None = None, *, callback: GoneBadCallback | None = None,
                  log: RunLog | None = None, name: str | None = None, tags: Sequence[str] = ()) -> dict:
    """Train a baseline command synchronously with a :class:`GoneBadCallback` watching it.

    Training is :func:`workbench.jobs.run_training`; the run ends ``stopped`` when the
    callback stopped it (its record's ``gone_bad`` field says why), else ``trained``;
    ``failed`` on an exception (re-raised). Returns ``{"run_id", "status", "verdict"}``.
    """
    from ..jobs import StopFlag, run_training

    cb = callback or GoneBadCallback()
    cb.stop_flag = StopFlag()
    res = run_training(command, data, log=log, name=name, tags=(*tags, "watched"), stop=cb.stop_flag,
                       callbacks=[cb])
    return {"run_id": res["run_id"], "status": res["status"], "verdict": cb.verdict}
