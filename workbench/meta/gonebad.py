"""Runs gone bad: call a run diverged, flat or worse than its sweep's median early, from its loss curve.

Superseded for tuning by :class:`workbench.meta.pruning.LearnedPruner` (trained on stored curves,
an Optuna pruner; NaN/inf prunes at once): the "worse than median" rule below is Optuna's
MedianPruner written again. Kept until notebook 04 and ``train_watched`` move over (lead: retire).

Outcomes (what a *finished* run turned out to be, :func:`outcome`):

- ``diverged``: a NaN/inf loss, or the final loss above ``diverge_factor`` × the initial one;
- ``flat``: the final loss less than ``flat_drop`` (5 %) below the initial one;
- ``worse_than_median``: it finished, but its score is below the median of its group
  (its sweep, or the runs on the same task);
- ``ok``: none of these.

The early call (:class:`GoneBadDetector`) sees only the first ``window`` (20 %) of the
planned steps:

- diverged: any NaN/inf, or the smoothed loss rising above ``explode_factor`` × its
  running minimum and above the initial loss (checked at every step, so an explosion
  is caught as it happens), or at the end of the window above ``rise_factor`` × the start;
- flat: at the end of the window (at least ``min_flat_points`` steps) the smoothed loss
  has dropped less than ``flat_tol`` (2 %) from its start — and, when sibling curves are
  given, less than their median drop (some tasks start slowly for every recipe);
- worse_than_median: at the end of the window the run's smoothed loss is above the
  median of its siblings' smoothed losses at the same step (needs reference curves;
  early loss rank predicts final rank well on the stored sweeps, see the README).

:class:`GoneBadCallback` runs the detector inside Lightning, stops (or only flags) the
run and records the verdict and its reason in the run record (``gone_bad`` field and a
``gone-bad:<call>`` tag). :func:`evaluate_detector` replays the early call over stored
runs: precision / recall and the compute a stop would have saved.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import pytorch_lightning as pl

from ..runlog import RunLog
from .common import as_records, loss_curve, run_score
from .compare import smooth_ema

__all__ = ["OUTCOMES", "Verdict", "GoneBadDetector", "outcome", "label_runs", "evaluate_detector",
           "DetectorReport", "GoneBadCallback", "group_key", "train_watched"]

OUTCOMES = ("ok", "diverged", "flat", "worse_than_median")


def _finite(xs: Iterable[float]) -> list[float]:
    return [x for x in xs if math.isfinite(x)]


def outcome(losses: Sequence[float], score: float | None = None, group_scores: Sequence[float] | None = None,
            diverge_factor: float = 1.5, flat_drop: float = 0.05) -> str:
    """What a finished run turned out to be (one of :data:`OUTCOMES`), from its whole loss curve."""
    if not losses:
        raise ValueError("outcome: empty loss curve")
    if any(not math.isfinite(x) for x in losses):
        return "diverged"
    n = len(losses)
    head = losses[:max(1, n // 20)]
    tail = losses[-max(1, n // 10):]
    initial = sum(head) / len(head)
    final = sum(tail) / len(tail)
    if final > diverge_factor * initial:
        return "diverged"
    if final > (1 - flat_drop) * initial:
        return "flat"
    if score is not None and group_scores:
        others = [s for s in group_scores if s is not None]
        if len(others) >= 3 and score < statistics.median(others):
            return "worse_than_median"
    return "ok"


@dataclass
class Verdict:
    """An early call on a run: ``call`` (an outcome), the step it was made at, and why."""

    call: str
    step: int
    reason: str
    planned_steps: int | None = None
    details: dict = field(default_factory=dict)

    @property
    def bad(self) -> bool:
        """True for every call but ``ok``."""
        return self.call != "ok"

    def to_dict(self) -> dict:
        """JSON-ready form stored in the run record."""
        return asdict(self)


@dataclass
class GoneBadDetector:
    """Early call on a loss curve after at most ``window`` × planned steps (see the module doc)."""

    window: float = 0.2
    explode_factor: float = 2.0
    rise_factor: float = 1.25
    flat_tol: float = 0.02
    smooth: float = 0.6
    min_points: int = 5
    min_flat_points: int = 8
    median_margin: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.window <= 1:
            raise ValueError(f"window = {self.window!r}: expected a fraction of the planned steps in (0, 1]")
        if self.explode_factor <= 1:
            raise ValueError(f"explode_factor = {self.explode_factor!r}: expected > 1")
        if not 0 <= self.smooth < 1:
            raise ValueError(f"smooth = {self.smooth!r}: expected a weight in [0, 1)")

    def window_steps(self, planned_steps: int) -> int:
        """How many steps the detector may watch before it must call."""
        return max(self.min_points, int(math.floor(self.window * planned_steps)))

    def check(self, losses: Sequence[float], planned_steps: int,
              reference: Sequence[Sequence[float]] | None = None, final: bool | None = None) -> Verdict:
        """Call a run from the losses seen so far (one per step, from step 0).

        ``final`` (default: the window is full) allows the flat / worse-than-median calls,
        which need the whole window; divergence is called as soon as it shows.
        """
        if planned_steps <= 0:
            raise ValueError(f"planned_steps = {planned_steps!r}: expected > 0")
        w = self.window_steps(planned_steps)
        seen = list(losses[:w])
        step = len(seen) - 1
        if final is None:
            final = len(seen) >= w
        for i, x in enumerate(seen):
            if not math.isfinite(x):
                return Verdict("diverged", i, f"loss is {x} at step {i}", planned_steps, {"value": x})
        if len(seen) < self.min_points:
            return Verdict("ok", step, f"only {len(seen)} steps seen; need {self.min_points}", planned_steps)
        sm = smooth_ema(seen, self.smooth)
        k = max(1, min(len(sm) // 10, 5))
        initial = sum(seen[:k]) / k
        running_min = math.inf
        for i, v in enumerate(sm):
            running_min = min(running_min, v)
            if i >= self.min_points and v > self.explode_factor * running_min and v > initial:
                return Verdict("diverged", i,
                               f"smoothed loss {v:.4g} at step {i} is {v / running_min:.1f}× its minimum "
                               f"{running_min:.4g} (limit {self.explode_factor:g}×) and above the start {initial:.4g}",
                               planned_steps, {"value": v, "min": running_min, "initial": initial})
        if not final:
            return Verdict("ok", step, "window not complete", planned_steps)
        now = sm[-1]
        drop = (initial - now) / abs(initial) if initial else 0.0
        if initial > 0 and now > self.rise_factor * initial:
            return Verdict("diverged", step,
                           f"smoothed loss rose from {initial:.4g} to {now:.4g} ({now / initial:.2f}×, limit "
                           f"{self.rise_factor:g}×) in the first {len(seen)} of {planned_steps} steps",
                           planned_steps, {"initial": initial, "now": now})
        refs, ref_drops = [], []
        for r in reference or []:
            r = [float(x) for x in r]
            if len(r) >= len(seen) and all(math.isfinite(x) for x in r[:len(seen)]):
                r_now = smooth_ema(r[:len(seen)], self.smooth)[-1]
                r_init = sum(r[:k]) / k
                refs.append(r_now)
                ref_drops.append((r_init - r_now) / abs(r_init) if r_init else 0.0)
        # flat needs enough points, and — when siblings are known — a slower start than most of
        # them: some tasks start slowly for every recipe, and that is not a flat run
        sibling_drop = statistics.median(ref_drops) if len(ref_drops) >= 2 else None
        if drop < self.flat_tol and len(seen) >= self.min_flat_points and (
                sibling_drop is None or drop < sibling_drop):
            vs = f"; siblings' median {100 * sibling_drop:.1f}%" if sibling_drop is not None else ""
            return Verdict("flat", step,
                           f"loss fell only {100 * drop:.1f}% in the first {len(seen)} of {planned_steps} steps "
                           f"({initial:.4g} → {now:.4g}; need ≥ {100 * self.flat_tol:g}%{vs})",
                           planned_steps, {"initial": initial, "now": now, "drop": drop,
                                           "sibling_drop": sibling_drop})
        if len(refs) >= 2:
            med = statistics.median(refs)
            if now > med * (1 + self.median_margin):
                return Verdict("worse_than_median", step,
                               f"smoothed loss {now:.4g} at step {step} is above the median {med:.4g} of "
                               f"{len(refs)} sibling runs at the same step", planned_steps,
                               {"now": now, "median": med, "n_reference": len(refs)})
        return Verdict("ok", step, f"loss fell {100 * drop:.1f}% in the first {len(seen)} steps", planned_steps,
                       {"initial": initial, "now": now, "drop": drop})

    def predict(self, run: Mapping[str, Any], planned_steps: int | None = None,
                reference: Sequence[Sequence[float]] | None = None, metric: str = "train_loss") -> Verdict:
        """Early call on a stored run, seeing only the first ``window`` of its curve."""
        _, losses = loss_curve(run, metric)
        if not losses:
            raise ValueError(f"run {run.get('id')}: no {metric!r} values logged")
        planned = planned_steps or planned_steps_of(run, len(losses))
        return self.check(losses, planned, reference)


def planned_steps_of(rec: Mapping[str, Any], default: int) -> int:
    """Planned optimizer steps of a stored run (recorded by the callback or a sweep), else ``default``."""
    for src in (rec.get("gone_bad") or {}, rec.get("summary") or {}, rec):
        v = src.get("planned_steps") if isinstance(src, Mapping) else None
        if isinstance(v, (int, float)) and v > 0:
            return int(v)
    return default


def group_key(rec: Mapping[str, Any]) -> str:
    """Runs compared against each other: the sweep tag, else the dataset, else the kind."""
    for t in rec.get("tags") or []:
        if str(t).startswith("sweep:"):
            return str(t)
    ds = rec.get("dataset") or {}
    for k in ("fingerprint", "sha256", "path", "root"):
        if ds.get(k):
            return f"dataset:{ds[k]}"
    return f"kind:{rec.get('kind')}"


def label_runs(runs: Iterable[Any], log: RunLog | None = None, metric: str = "train_loss") -> dict[str, str]:
    """Outcome of each finished run with a loss curve (run id → outcome)."""
    recs = [r for r in as_records(runs, log) if r.get("status") in ("trained", "completed", "failed", "stopped")]
    groups: dict[str, list[float]] = {}
    for r in recs:
        s = run_score(r)
        if s is not None:
            groups.setdefault(group_key(r), []).append(s)
    out = {}
    for r in recs:
        _, losses = loss_curve(r, metric)
        if losses:
            out[r["id"]] = outcome(losses, run_score(r), groups.get(group_key(r)))
    return out


@dataclass
class DetectorReport:
    """Replay of the early call over stored runs (``frame``: one row per run)."""

    frame: Any
    precision: float
    recall: float
    compute_saved: float
    compute_lost: float
    per_outcome: Any

    def __repr__(self) -> str:
        return (f"DetectorReport(runs={len(self.frame)}, precision={self.precision:.2f}, recall={self.recall:.2f}, "
                f"compute_saved={100 * self.compute_saved:.0f}%, compute_lost_on_good_runs="
                f"{100 * self.compute_lost:.0f}%)")


def evaluate_detector(runs: Iterable[Any], detector: GoneBadDetector | None = None, log: RunLog | None = None,
                      metric: str = "train_loss", use_reference: bool = True) -> DetectorReport:
    """Precision/recall of the early "gone bad" call against what the stored runs turned out to be.

    A call counts as correct when the run was bad (any outcome but ``ok``), whatever the
    kind of badness. ``compute_saved`` is the share of all stored steps that stopping the
    truly bad runs at the call would have saved; ``compute_lost`` is the share spent on good
    runs that the call would have stopped (their result would have been lost).
    Sibling curves (same :func:`group_key`, the run itself left out) feed the
    worse-than-median call.
    """
    import pandas as pd

    det = detector or GoneBadDetector()
    recs = [r for r in as_records(runs, log) if r.get("status") in ("trained", "completed", "failed", "stopped")]
    truth = label_runs(recs, metric=metric)
    curves = {r["id"]: loss_curve(r, metric)[1] for r in recs}
    rows = []
    for r in recs:
        if r["id"] not in truth:
            continue
        losses = curves[r["id"]]
        planned = planned_steps_of(r, len(losses))
        refs = [curves[o["id"]] for o in recs
                if use_reference and o["id"] != r["id"] and group_key(o) == group_key(r)]
        v = det.check(losses, planned, refs)
        rows.append({"id": r["id"], "name": r.get("name"), "group": group_key(r), "truth": truth[r["id"]],
                     "call": v.call, "call_step": v.step, "planned_steps": planned,
                     "saved_steps": max(0, planned - (v.step + 1)) if v.bad else 0, "reason": v.reason})
    df = pd.DataFrame(rows)
    if df.empty:
        raise ValueError("evaluate_detector: no finished runs with a loss curve")
    bad_t = df["truth"] != "ok"
    bad_c = df["call"] != "ok"
    tp = int((bad_t & bad_c).sum())
    precision = tp / int(bad_c.sum()) if bad_c.any() else float("nan")
    recall = tp / int(bad_t.sum()) if bad_t.any() else float("nan")
    total = float(df["planned_steps"].sum())
    saved = float(df.loc[bad_t & bad_c, "saved_steps"].sum()) / total
    lost = float(df.loc[~bad_t & bad_c, "saved_steps"].sum()) / total
    per = pd.crosstab(df["truth"], df["call"])
    return DetectorReport(df, precision, recall, saved, lost, per)


class GoneBadCallback(pl.Callback):
    """Lightning callback: watch the training loss, stop or flag a run going bad, record why.

    Args:
        detector: thresholds (default :class:`GoneBadDetector`).
        stop_on: calls that stop training (``trainer.should_stop``); other bad calls only flag.
        reference: sibling loss curves for the worse-than-median call, or a sweep tag
            (``"sweep:<name>"``) whose finished runs are loaded from the run log.
        planned_steps: override Lightning's ``estimated_stepping_batches``.
        check_every: run the detector every N steps (NaN is checked on every step).
        run: the run to record into (handle or id) when the trainer has no ``WorkbenchLogger``.
        log: run log for ``reference`` tags and ``run`` ids.

    After training, ``verdict`` holds the call (``None`` while nothing was called).
    """

    def __init__(self, detector: GoneBadDetector | None = None,
                 stop_on: Sequence[str] = ("diverged", "flat"),
                 reference: Sequence[Sequence[float]] | str | None = None, planned_steps: int | None = None,
                 check_every: int = 1, run: Any = None, log: RunLog | None = None) -> None:
        super().__init__()
        bad = [s for s in stop_on if s not in OUTCOMES or s == "ok"]
        if bad:
            raise ValueError(f"stop_on: {bad} not allowed; choose from {', '.join(OUTCOMES[1:])}")
        self.detector = detector or GoneBadDetector()
        self.stop_on = tuple(stop_on)
        self._reference_spec = reference
        self.planned_steps = planned_steps
        self.check_every = max(1, int(check_every))
        self._run = run
        self._log = log
        self.losses: list[float] = []
        self.verdict: Verdict | None = None
        self.stopped = False
        #: a workbench.jobs.StopFlag to set when stopping (train_watched wires it)
        self.stop_flag: Any = None
        self._reference: list[list[float]] | None = None

    # -- helpers -------------------------------------------------------------------
    def reference_curves(self) -> list[list[float]]:
        """Sibling curves: given directly, or the finished runs of a sweep tag in the run log."""
        if self._reference is None:
            spec = self._reference_spec
            if isinstance(spec, str):
                log = self._log or RunLog()
                recs = [log.get(r["id"]) for r in log.find(tag=spec, status=["trained", "completed"])]
                self._reference = [loss_curve(r)[1] for r in recs]
            else:
                self._reference = [list(map(float, c)) for c in spec or []]
        return self._reference

    def _planned(self, trainer: Any) -> int:
        if self.planned_steps:
            return int(self.planned_steps)
        est = getattr(trainer, "estimated_stepping_batches", None)
        if isinstance(est, (int, float)) and math.isfinite(est) and est > 0:
            return int(est)
        return max(len(self.losses) * 5, 1)

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

    def _record(self, trainer: Any, verdict: Verdict, action: str) -> None:
        run = self._target_run(trainer)
        if run is None:
            return
        info = verdict.to_dict()
        info["action"] = action
        try:
            tags = list(run.log.get(run.id, metrics=False).get("tags") or [])
            tag = f"gone-bad:{verdict.call}"
            run.update(gone_bad=info, planned_steps=verdict.planned_steps,
                       tags=sorted(set(tags) | {tag}))
        except Exception:  # recording must never break training
            pass

    # -- Lightning hooks -------------------------------------------------------------
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is None:
            return
        try:
            value = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
        except (TypeError, ValueError):
            return
        self.losses.append(value)
        if self.verdict is not None and self.verdict.bad:
            return
        planned = self._planned(trainer)
        w = self.detector.window_steps(planned)
        n = len(self.losses)
        if n > w:
            if not math.isfinite(value):  # past the window, NaN still stops the run
                v = Verdict("diverged", n - 1, f"loss is {value} at step {n - 1} (after the window)", planned)
                self._act(trainer, v)
            return
        if math.isfinite(value) and n % self.check_every and n < w:
            return
        v = self.detector.check(self.losses, planned, self.reference_curves(), final=n >= w)
        if v.bad:
            self._act(trainer, v)
        elif n >= w and self.verdict is None:
            self.verdict = v
            self._record(trainer, v, "none")

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
    detector stopped it (its record's ``gone_bad`` field says why), else ``trained``;
    ``failed`` on an exception (re-raised). Returns ``{"run_id", "status", "verdict"}``.
    """
    from ..jobs import StopFlag, run_training

    cb = callback or GoneBadCallback()
    cb.stop_flag = StopFlag()
    res = run_training(command, data, log=log, name=name, tags=(*tags, "watched"), stop=cb.stop_flag,
                       callbacks=[cb])
    return {"run_id": res["run_id"], "status": res["status"], "verdict": cb.verdict}
