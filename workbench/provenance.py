"""Where a run's weights and its learning rate came from, in one line each — for ``runs show`` and
the runs panel (light: no torch). The fields are written by the runner: ``lineage``
(:mod:`workbench.lineage`), ``resumes`` (:func:`workbench.training.resume_training`), ``lr_find``
(:mod:`workbench.lrfind`).
"""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["lineage_text", "resume_text", "lr_find_text"]


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


def lr_find_text(rec: Mapping[str, Any]) -> str | None:
    """One line on the lr finder's answer (None: the command gave a rate)."""
    found = rec.get("lr_find")
    if not found:
        return None
    return (f"suggested lr {found['suggestion']:.3g} from {len(found.get('lr') or [])} steps"
            f" ({found.get('min_lr', 0):g} … {found.get('max_lr', 0):g}, {found.get('mode')})")
