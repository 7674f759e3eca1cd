"""A trained run's learner back from its record and checkpoint (any kind, ``weights_only=True``).

The command in the record names the learner class (``command.learner``); the checkpoint holds
its constructor arguments (``save_hyperparameters``) and weights. Paths read from a record are
resolved inside the run's own folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..commands import Command, parse
from ..nets.weights import load_checkpoint
from .recipe import resolve


def run_file(rec: Mapping[str, Any], rel: str) -> Path:
    """``rel`` (from the record) inside the run folder; anything pointing outside is refused."""
    base = Path(rec["dir"]).resolve()
    p = (base / rel).resolve()
    if not p.is_relative_to(base):
        raise ValueError(f"run {rec['id']}: artifact path {rel!r} points outside its folder {base}")
    return p


def load_learner(rec: Mapping[str, Any], checkpoint: str | None = None) -> tuple[Any, Command]:
    """``(module in eval mode, command)`` of a trained run's record (best checkpoint by default)."""
    from ..runlog import RunLogError

    cmd = parse(rec["config"])
    arts = rec.get("artifacts") or {}
    rel = checkpoint or arts.get("checkpoint") or arts.get("last_checkpoint") or arts.get("weights")
    if not rel:
        raise RunLogError(f"run {rec['id']} ({rec.get('name')}) has no checkpoint (status {rec.get('status')})")
    ck = load_checkpoint(run_file(rec, rel))
    hparams = ck.get("hyper_parameters", ck.get("hparams"))  # "hparams": few-shot runs before the runner merge
    module = resolve(cmd.learner)(**hparams)
    module.load_state_dict(ck["state_dict"])
    module.eval()
    return module, cmd
