"""What a run record is: statuses, the id rule, the checks a record must pass, a typed view,
the flattened row ``RunLog.to_frame`` shows, and the JSON encodings the stores use.

Records stay plain dicts in the stores (every module reads them); :class:`RunRecord` is the
typed view for readers that would otherwise probe dict keys.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

import orjson

from .errors import RunLogError

#: Every status a run can have.
STATUSES = ("queued", "running", "trained", "testing", "completed", "failed", "stopped", "crashed")
#: Statuses of a run whose process should be alive.
ACTIVE = ("queued", "running", "testing")
#: Statuses a run never leaves.
TERMINAL = ("failed",)
#: Allowed status transitions (from -> to).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "queued": ("running", "failed", "stopped", "crashed"),
    "running": ("trained", "completed", "failed", "stopped", "crashed"),
    "trained": ("testing", "completed", "failed", "crashed"),
    "testing": ("completed", "trained", "failed", "stopped", "crashed"),
    "completed": ("testing",),
    "stopped": ("testing", "running"),
    "failed": (),
    "crashed": ("running",),
}

#: A run id names a folder under ``runs/``: letters, digits, ``_ . -``, starting with a letter or
#: digit, so no id can be ``..``, hold a ``/`` or climb out of the runs folder.
RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

#: Bump when :func:`frame_row` changes: stores recompute their stored rows on open.
FRAME_VERSION = 2
_FRAME_SKIP = ("config", "summary", "env", "dataset", "epochs", "history", "metrics_summary", "test_config",
               "artifacts", "durations", "metrics")


def check_run_id(run_id: Any) -> str:
    """Return ``run_id`` if it is a valid run id, else raise :class:`RunLogError` naming it."""
    if not isinstance(run_id, str) or not RUN_ID_RE.fullmatch(run_id):
        raise RunLogError(f"invalid run id {run_id!r}: a run id is 1-128 letters, digits, '_', '.' or '-',"
                          " starting with a letter or digit")
    return run_id


def record_problems(rec: Any) -> list[str]:
    """Everything wrong with a stored record (empty when it is usable)."""
    if not isinstance(rec, dict):
        return [f"a record is an object, not {type(rec).__name__}"]
    out: list[str] = []
    rid = rec.get("id")
    if not isinstance(rid, str) or not RUN_ID_RE.fullmatch(rid):
        out.append(f"id {rid!r} is not a valid run id" if "id" in rec else "no id")
    for key in ("name", "kind", "created_at"):
        if not isinstance(rec.get(key), str):
            out.append(f"{key} {rec.get(key)!r} is not a string")
    if rec.get("status") not in STATUSES:
        out.append(f"status {rec.get('status')!r} is not one of {', '.join(STATUSES)}")
    pid = rec.get("pid")
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int)):
        out.append(f"pid {pid!r} is not an integer")
    for key in ("host", "pid_start", "error", "parent", "updated_at", "started_at", "ended_at"):
        if rec.get(key) is not None and not isinstance(rec[key], str):
            out.append(f"{key} {rec[key]!r} is not a string")
    tags = rec.get("tags")
    if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        out.append(f"tags {tags!r} is not a list of strings")
    for key in ("config", "summary", "metrics_summary", "dataset", "durations", "env", "artifacts", "test_config"):
        if rec.get(key) is not None and not isinstance(rec[key], dict):
            out.append(f"{key} is {type(rec[key]).__name__}, not an object")
    for key in ("epochs", "history", "metrics"):
        v = rec.get(key)
        if v is not None and not (isinstance(v, list) and all(isinstance(e, dict) for e in v)):
            out.append(f"{key} is not a list of objects")
    return out


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


#: Summary keys tried, in order, for a run's score (higher is better): test accuracy first —
#: it is measured on data the run never tuned on — then the final validation accuracy (the
#: weights the run ends with; every kind records it, and ``best_val_accuracy`` too).
SCORE_KEYS = ("test_accuracy", "accuracy", "test_acc", "final_val_accuracy", "best_val_accuracy", "val_accuracy",
              "val_acc")


def finite(v: Any) -> float | None:
    """``v`` as a float when it is a finite number (not a bool), else None."""
    v = _number(v)
    return v if v is not None and math.isfinite(v) else None


@dataclass(frozen=True)
class Score:
    """A run's score: which summary key, its value, and its 95% CI half-width when recorded."""

    key: str
    value: float
    ci95: float | None = None

    def __str__(self) -> str:
        return f"{self.key}={self.value:.3f}" + (f"±{self.ci95:.3f}" if self.ci95 is not None else "")


def _time(v: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(v) if isinstance(v, str) else None
    except ValueError:
        return None


@dataclass(frozen=True)
class RunRecord:
    """A typed, read-only view of one run record (``RunRecord.from_dict(log.get(id))``)."""

    id: str
    name: str
    kind: str
    status: str
    config: Mapping[str, Any]
    summary: Mapping[str, Any]
    metrics_summary: Mapping[str, Any]
    dataset: Mapping[str, Any] | None
    tags: tuple[str, ...]
    created_at: datetime | None
    ended_at: datetime | None
    #: ``summary.test_accuracy`` (or ``summary.accuracy``) when the run was tested.
    test_accuracy: float | None
    #: Half-width of the 95% confidence interval (few-shot runs: ``summary.test_ci95``).
    test_ci95: float | None
    seed: int | None
    error: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    task: Mapping[str, Any] = field(default_factory=dict, repr=False)
    artifacts: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, rec: Mapping[str, Any]) -> "RunRecord":
        """The typed view of a record dict (as returned by ``RunLog.get`` / ``find``)."""
        s = dict(rec.get("summary") or {})
        acc = _number(s.get("test_accuracy"))
        if acc is None:
            acc = _number(s.get("accuracy"))
        ci = _number(s.get("test_ci95"))
        if ci is None:
            ci = _number(s.get("ci95"))
        seed = (rec.get("env") or {}).get("seed")
        if seed is None:
            seed = (rec.get("config") or {}).get("seed")
        return cls(id=rec["id"], name=rec.get("name", ""), kind=rec.get("kind", ""), status=rec.get("status", ""),
                   config=dict(rec.get("config") or {}), summary=s,
                   metrics_summary=dict(rec.get("metrics_summary") or {}), dataset=rec.get("dataset"),
                   tags=tuple(rec.get("tags") or ()), created_at=_time(rec.get("created_at")),
                   ended_at=_time(rec.get("ended_at")), test_accuracy=acc, test_ci95=ci,
                   seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
                   error=rec.get("error"), raw=rec, task=dict(rec.get("task") or {}),
                   artifacts=dict(rec.get("artifacts") or {}))

    @property
    def finished(self) -> bool:
        """True once the run has ended (whatever the outcome)."""
        return self.status not in ACTIVE

    def score(self, key: str | None = None) -> Score | None:
        """The first of :data:`SCORE_KEYS` (or just ``key``) the summary has, with its 95% CI."""
        for k in (key,) if key else SCORE_KEYS:
            v = finite(self.summary.get(k))
            if v is not None:
                return Score(k, v, finite(self.summary.get(k.replace("accuracy", "ci95"))))
        return None

    @property
    def data_root(self) -> str | None:
        """The dataset folder the run trained on (task, dataset record, then command)."""
        for v in (self.task.get("path"), (self.dataset or {}).get("root"), self.config.get("data")):
            if isinstance(v, str) and v:
                return v
        return None


# -- the to_frame row ----------------------------------------------------------------
def flatten(d: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Nested mappings to dotted keys; short lists as JSON text; long series dropped."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key))
        elif isinstance(v, list) and len(v) > 20:
            continue  # long series (per-episode accuracies) do not belong in a run table
        elif isinstance(v, list):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def frame_row(r: Mapping[str, Any]) -> dict[str, Any]:
    """One run's row in ``RunLog.to_frame``: config/summary/durations/dataset/env flattened."""
    row = {k: v for k, v in r.items() if k not in _FRAME_SKIP}
    row["tags"] = ",".join(r.get("tags") or [])
    for group in ("config", "summary", "durations", "dataset", "env"):
        row.update(flatten(r.get(group) or {}, group))
    for k, s in (r.get("metrics_summary") or {}).items():
        row[f"last.{k}"] = s.get("last") if isinstance(s, Mapping) else None
    return row


# -- encodings -----------------------------------------------------------------------
def dumps_record(rec: Any) -> str:
    """A record as compact JSON; NaN/Infinity kept (Python's JSON dialect), so it round-trips."""
    return json.dumps(rec, separators=(",", ":"), allow_nan=True, default=str)


def jsonable(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` as a record holds them: a JSON round trip (``str()`` for what JSON cannot hold, NaN kept)."""
    return json.loads(json.dumps(dict(fields), default=str, allow_nan=True))


def canonical(rec: Mapping[str, Any], metrics: list[dict[str, Any]]) -> str:
    """A run's content as one comparable string (import and migration: "is it the same run?").

    Left out: ``dir`` (where one log keeps the run) and a folded-in ``metrics`` list (``metrics`` is compared).
    """
    body = {k: v for k, v in rec.items() if k not in ("dir", "metrics")}
    return json.dumps([body, metrics], sort_keys=True, allow_nan=True, default=str)


def loads(text: str | bytes) -> Any:
    """Parse JSON fast (orjson), falling back to the stdlib for NaN/Infinity and huge integers."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def _strict_json(obj: Any) -> str:
    try:
        return orjson.dumps(obj).decode()
    except (TypeError, orjson.JSONEncodeError):  # e.g. an integer beyond 64 bits
        return json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False, default=str)


def frame_parts(rec: Mapping[str, Any]) -> tuple[str, str, str]:
    """The stored ``to_frame`` row: (key of its column list, the column list, its values), as strict JSON.

    Runs of one kind share a column list, so a store keeps each list once and each run's values
    as a bare JSON array: half the bytes to parse, and pandas builds frames from lists fastest.
    NaN becomes null, which pandas shows as NaN anyway.
    """
    row = frame_row(rec)
    cols = _strict_json(list(row))
    return hashlib.blake2b(cols.encode(), digest_size=8).hexdigest(), cols, _strict_json(list(row.values()))


def build_frame(rows: list[tuple[str, str]], columns: Mapping[str, str]):
    """A DataFrame from stored (column-list key, values JSON) rows, in row order."""
    import pandas as pd

    if not rows:
        return pd.DataFrame()
    groups: dict[str, list[int]] = {}
    for i, (key, _) in enumerate(rows):
        groups.setdefault(key, []).append(i)
    parts = []
    for key, pos in groups.items():
        values = loads("[" + ",".join(rows[i][1] for i in pos) + "]")
        names = loads(columns[key])
        if any(not isinstance(v, list) or len(v) != len(names) for v in values):
            raise ValueError("a stored to_frame row does not match its column list")
        parts.append(pd.DataFrame(values, columns=names, index=pos if len(groups) > 1 else None))
    if len(parts) == 1:
        return parts[0]
    return pd.concat(parts, sort=False).sort_index().reset_index(drop=True)
