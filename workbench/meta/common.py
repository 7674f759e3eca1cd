"""Helpers shared by the meta-analysis modules: resolving runs, flattening configs, scores.

A run's *score* is the number meta-analysis ranks runs by. Training, testing and
meta-learning runs store it under different names, so :func:`run_score` looks in a
fixed order (test accuracy first: it is measured on data the run never tuned on).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping

from ..runlog.records import SCORE_KEYS, RunRecord, finite
from ..runlog import RunLog

#: Top-level config keys that say *where*, *who* or *which draw*, not *how*: never hyperparameters.
NON_HPARAM_TOP = ("data", "data_dir", "dataset", "name", "labels", "label_names", "seed", "run_name", "tags",
                  "description", "notes", "out_dir", "threads",
                  # how the runner logs and checkpoints, not what it learns (issue 15)
                  "loggers", "lr_find", "checkpoint_every_s")
#: Nested keys (last dotted part) that are locations, not choices.
NON_HPARAM_LEAF = ("data_dir", "root", "out_dir", "dataset_dir")

def as_records(runs: Iterable[Any] | None, log: RunLog | None = None, metrics: bool = True) -> list[dict]:
    """Resolve run ids / names / records / handles to full records (metrics folded in).

    ``runs=None`` means every run in the log.
    """
    if runs is None:
        log = log or RunLog()
        return [log.get(r["id"], metrics=metrics) for r in log.runs()]
    out: list[dict] = []
    for r in runs:
        if isinstance(r, Mapping):
            rec = dict(r)
            if metrics and "metrics" not in rec and rec.get("id"):
                log = log or RunLog()
                rec = log.get(rec["id"], metrics=True)
            out.append(rec)
        else:
            ref = getattr(r, "run_id", None) or getattr(r, "id", None) or r
            if not isinstance(ref, str):
                raise TypeError(f"runs: expected run ids, names, records or handles, got {type(r).__name__}")
            log = log or RunLog()
            out.append(log.get(ref, metrics=metrics))
    return out


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts → dotted keys; lists stay values (a layer list is one hyperparameter)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def unflatten_set(d: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dict ``d`` in place (creating sub-dicts)."""
    parts = dotted.split(".")
    cur = d
    for i, p in enumerate(parts[:-1]):
        nxt = cur.get(p)
        if nxt is None:
            nxt = cur[p] = {}
        if not isinstance(nxt, dict):
            raise KeyError(f"cannot set {dotted!r}: {'.'.join(parts[:i + 1])!r} is a {type(nxt).__name__}, not a section")
        cur = nxt
    cur[parts[-1]] = value


def hashable(v: Any) -> Any:
    """A value usable as a dict key / table cell (lists and dicts become canonical JSON)."""
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, sort_keys=True, default=str)
    return v


def stable_hash(obj: Any, n: int = 12) -> str:
    """Short SHA-1 of canonical JSON (key order never matters)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def hparams(config: Mapping[str, Any]) -> dict[str, Any]:
    """The hyperparameters of a config: flattened, data location / names / seed removed."""
    flat = flatten(config or {})
    # None / {} mean "unset": a field a newer TrainingCommand adds with a None default must
    # not make old and new runs of the same recipe look different
    return {k: v for k, v in flat.items()
            if k.split(".")[0] not in NON_HPARAM_TOP and k.split(".")[-1] not in NON_HPARAM_LEAF
            and v is not None and v != {}}


def config_key(config: Mapping[str, Any]) -> str:
    """Identity of a training recipe, independent of which data it ran on and its seed."""
    return stable_hash({k: hashable(v) for k, v in hparams(config).items()})


def lower_is_better(metric: str) -> bool:
    """Losses and errors go down; everything else (accuracy, f1) goes up."""
    m = metric.lower()
    return any(w in m for w in ("loss", "error", "err", "nll", "perplexity"))


def run_score(rec: Mapping[str, Any], key: str | None = None) -> float | None:
    """The run's score (higher is better), or ``None`` when it has none.

    With ``key`` only that summary key (or epoch metric: best over epochs) is used.
    """
    score = RunRecord.from_dict(rec).score(key)
    if score is not None:
        return score.value
    # fall back on per-epoch validation metrics: the best epoch
    for k in (key,) if key else SCORE_KEYS:
        vals = [finite(e.get(k)) for e in rec.get("epochs") or []]
        vals = [v for v in vals if v is not None]
        if vals:
            return min(vals) if lower_is_better(k) else max(vals)
    return None


def loss_curve(rec: Mapping[str, Any], metric: str = "train_loss") -> tuple[list[int], list[float]]:
    """(steps, values) of a per-step metric; NaN/inf kept (they are the signal of a diverged run)."""
    steps: list[int] = []
    vals: list[float] = []
    for row in rec.get("metrics") or []:
        v = row.get(metric)
        if v is not None:
            steps.append(int(row.get("step", len(steps))))
            vals.append(float(v))
    return steps, vals
