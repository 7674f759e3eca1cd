"""Typed views of run records, for the readers that used to probe dict keys.

A record stays the dict the run log stores; :class:`RunView` reads it in one agreed way: its
score (the first of :data:`SCORE_KEYS` it has, with the matching 95% CI), the folder it trained
on, its checkpoint. Light on purpose (no torch): the CLI and panels use it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

#: Summary keys tried, in order, for a run's score (higher is better): test accuracy first —
#: it is measured on data the run never tuned on — then the final validation accuracy (the
#: weights the run ends with; every kind records it, and ``best_val_accuracy`` too).
SCORE_KEYS = ("test_accuracy", "accuracy", "test_acc", "final_val_accuracy", "best_val_accuracy", "val_accuracy",
              "val_acc")


def finite(v: Any) -> float | None:
    """``v`` as a float when it is a finite number (not a bool), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


@dataclass(frozen=True)
class Score:
    """A run's score: which summary key, its value, and its 95% CI half-width when recorded."""

    key: str
    value: float
    ci95: float | None = None

    def __str__(self) -> str:
        return f"{self.key}={self.value:.3f}" + (f"±{self.ci95:.3f}" if self.ci95 is not None else "")


@dataclass(frozen=True)
class RunView:
    """The fields of a run record that readers need, typed."""

    id: str
    name: str = ""
    kind: str = ""
    status: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)
    dataset: Mapping[str, Any] = field(default_factory=dict)
    task: Mapping[str, Any] = field(default_factory=dict)
    artifacts: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    error: str | None = None

    @classmethod
    def of(cls, rec: Mapping[str, Any]) -> "RunView":
        """The view of a record (missing or null fields become empty)."""
        return cls(id=str(rec.get("id", "")), name=str(rec.get("name") or ""), kind=str(rec.get("kind") or ""),
                   status=str(rec.get("status") or ""), config=rec.get("config") or {},
                   summary=rec.get("summary") or {}, dataset=rec.get("dataset") or {}, task=rec.get("task") or {},
                   artifacts=rec.get("artifacts") or {}, tags=tuple(rec.get("tags") or ()), error=rec.get("error"))

    def score(self, key: str | None = None) -> Score | None:
        """The first of :data:`SCORE_KEYS` (or just ``key``) the summary has, with its CI."""
        for k in (key,) if key else SCORE_KEYS:
            v = finite(self.summary.get(k))
            if v is not None:
                return Score(k, v, finite(self.summary.get(k.replace("accuracy", "ci95"))))
        return None

    @property
    def data_root(self) -> str | None:
        """The dataset folder the run trained on (task, dataset record, then command)."""
        for v in (self.task.get("path"), self.dataset.get("root"), self.config.get("data")):
            if isinstance(v, str) and v:
                return v
        return None


def lineage_text(rec: Mapping[str, Any]) -> str | None:
    """One line on where a run's weights came from (``init_from``), or None when from scratch."""
    lin = rec.get("lineage") or {}
    if not lin.get("parent"):
        return None
    opts = lin.get("options") or {}
    text = (f"from {lin.get('parent_name') or '?'} ({lin['parent']}, {lin.get('parent_kind')}),"
            f" {opts.get('checkpoint', 'best')} checkpoint sha256 {str(lin.get('sha256', ''))[:12]}")
    if "loaded" in lin:
        text += f"; loaded {len(lin['loaded'])} tensors, re-initialised {len(lin.get('reinitialised') or [])}"
    if lin.get("head_reason"):
        text += f"; head {lin['head_reason']}"
    frozen = [f"{opts[k]} {k.split('_')[1]}" for k in ("freeze_epochs", "freeze_steps") if opts.get(k)]
    return text + (f"; loaded tensors frozen for {' and '.join(frozen)}" if frozen else "")


def resume_text(rec: Mapping[str, Any]) -> str | None:
    """One line on how often a run was resumed, from which step (None: never)."""
    res = rec.get("resumes") or []
    if not res:
        return None
    return f"resumed {len(res)}×: " + ", ".join(f"from {r.get('from_status')} at step {r.get('from_step')}"
                                                for r in res)
