"""Runs → TensorBoard: ``python -m workbench runs export --to tensorboard DIR``.

One event folder per run, ``DIR/<name>-<id>/`` (``tensorboard --logdir DIR``): every per-step
metric row as a scalar at its step and wall time, the summary's numbers under ``summary/``, the
command as text and as hyperparameters (the HParams tab, with the summary's numbers as its
metrics). Written with ``torch.utils.tensorboard.SummaryWriter``; a run already exported (its
folder has event files) is skipped.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from .mlflow import flat_params

__all__ = ["to_tensorboard", "run_folder"]


def run_folder(rec: Mapping[str, Any]) -> str:
    """The event folder name of a run: its name (made path-safe) and id."""
    name = re.sub(r"[^\w.-]+", "_", str(rec.get("name") or "run")).strip("._")[:60] or "run"
    return f"{name}-{rec['id']}"


def _numbers(d: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in d.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def to_tensorboard(records: Iterable[Mapping[str, Any]], dest: str | Path) -> list[dict[str, Any]]:
    """Write full records (metrics folded in) as TensorBoard event files under ``dest``.

    Rows: ``{"run_id", "dir", "exported", "scalars"}`` (``exported`` False: already there).
    """
    from torch.utils.tensorboard import SummaryWriter

    root = Path(dest).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    out: list[dict[str, Any]] = []
    for rec in records:
        folder = root / run_folder(rec)
        if folder.is_dir() and any(folder.glob("events.out.tfevents.*")):
            out.append({"run_id": rec["id"], "dir": str(folder), "exported": False, "scalars": 0})
            continue
        n = 0
        with SummaryWriter(log_dir=str(folder)) as w:
            for row in rec.get("metrics") or []:
                step, t = int(row.get("step", 0)), float(row.get("time", 0.0)) or None
                for k, v in row.items():
                    if k not in ("step", "time", "epoch") and isinstance(v, (int, float)):
                        w.add_scalar(k, float(v), step, walltime=t)
                        n += 1
            summary = _numbers(rec.get("summary") or {})
            last = int((rec.get("summary") or {}).get("steps") or 0)
            for k, v in summary.items():
                w.add_scalar(f"summary/{k}", v, last)
            w.add_text("command", "```\n" + json.dumps(rec.get("config") or {}, indent=1) + "\n```", 0)
            w.add_text("record", f"run {rec['id']} ({rec.get('kind')}, {rec.get('status')})", 0)
            w.add_hparams(flat_params(rec.get("config") or {}), {f"hparam/{k}": v for k, v in summary.items()},
                          run_name=".")
        out.append({"run_id": rec["id"], "dir": str(folder), "exported": True, "scalars": n})
    return out
