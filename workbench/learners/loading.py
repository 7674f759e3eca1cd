"""A trained run's learner back from its record and checkpoint (any kind, ``weights_only=True``).

The command in the record names the learner class (``command.learner``); the checkpoint holds
its constructor arguments (``save_hyperparameters``) and weights. Opening a colleague's run (or a
shared ``WORKBENCH_HOME``) must be safe, so:

- every path read from a record is resolved inside the run's own folder (:func:`run_file`):
  ``../``, absolute paths, and symlinks that lead out — the run folder itself included — are refused;
- the checkpoint is read weights-only (:func:`~workbench.nets.weights.load_checkpoint`);
- the learner is built on the ``meta`` device first and its weights must match the checkpoint's
  key for key and shape for shape; then the checkpoint's tensors are assigned to it — so opening
  a run allocates no more than its checkpoint holds, whatever its hyperparameters claim;
- files a command names for initialisation (a backbone's ``weights_path``, ``init_from``) are not
  read again: the checkpoint already holds the trained weights.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

from ..commands import Command, parse
from ..nets.weights import CheckpointError, load_checkpoint
from .recipe import resolve


class RunFileError(ValueError):
    """A path in a run record that does not stay inside the run's folder."""


def run_file(rec: Mapping[str, Any], rel: str) -> Path:
    """``rel`` (from the record) inside the run folder; anything pointing outside is refused."""
    folder = Path(rec["dir"])
    if not isinstance(rel, str) or not rel or Path(rel).is_absolute():
        raise RunFileError(f"run {rec['id']}: artifact path {rel!r} is not a path inside its folder")
    if folder.is_symlink():
        raise RunFileError(f"run {rec['id']}: its folder {folder} is a symlink (to {folder.resolve()}); refused")
    base = folder.resolve()
    p = (base / rel).resolve()
    if not p.is_relative_to(base):
        raise RunFileError(f"run {rec['id']}: artifact path {rel!r} points outside its folder {base}")
    return p


def _for_rebuild(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments without the files a command reads to *initialise* weights."""
    out = copy.deepcopy(dict(hparams))
    cmd = out.get("command")
    if isinstance(cmd, dict):
        cmd.pop("init_from", None)
        params = (cmd.get("model") or {}).get("params") if isinstance(cmd.get("model"), dict) else None
        if isinstance(params, dict):
            params.pop("weights_path", None)
    return out


def _fits(module: Any, state: Mapping[str, Any], where: str) -> None:
    """The checkpoint's weights are exactly the ones the module has (names and shapes)."""
    import torch

    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    if want == have and len(have) == len(state):
        return
    missing, extra = sorted(set(want) - set(have)), sorted(set(state) - set(want))
    wrong = sorted(k for k in set(want) & set(have) if want[k] != have[k])
    parts = ([f"missing {missing[:3]}"] if missing else []) + ([f"unexpected {extra[:3]}"] if extra else []) + \
        [f"{k}: {have[k]} where the model has {want[k]}" for k in wrong[:3]]
    raise CheckpointError(f"{where}: its weights do not fit the model its hyperparameters describe"
                          f" ({'; '.join(parts)})")


def rebuild(cls: Any, hparams: Mapping[str, Any], state: Mapping[str, Any], where: str) -> Any:
    """``cls(**hparams)`` holding ``state``: built on the meta device, checked, then given the tensors."""
    import torch

    if not isinstance(hparams, Mapping) or not isinstance(state, Mapping):
        raise CheckpointError(f"{where}: expected 'hyper_parameters' and 'state_dict' dicts")
    try:
        with torch.device("meta"):
            module = cls(**_for_rebuild(hparams))
    except Exception as exc:
        raise CheckpointError(f"{where}: its hyperparameters do not build a {cls.__name__}: "
                              f"{type(exc).__name__}: {str(exc)[:200]}") from None
    _fits(module, state, where)
    module.load_state_dict(state, assign=True)
    if any(t.is_meta for t in [*module.parameters(), *module.buffers()]):  # state the checkpoint does not hold
        module = cls(**_for_rebuild(hparams))
        module.load_state_dict(state)
    return module


def load_learner(rec: Mapping[str, Any], checkpoint: str | None = None) -> tuple[Any, Command]:
    """``(module in eval mode, command)`` of a trained run's record (best checkpoint by default)."""
    from ..runlog import RunLogError

    cmd = parse(rec["config"])
    arts = rec.get("artifacts") or {}
    rel = checkpoint or arts.get("checkpoint") or arts.get("last_checkpoint") or arts.get("weights")
    if not rel:
        raise RunLogError(f"run {rec['id']} ({rec.get('name')}) has no checkpoint (status {rec.get('status')})")
    path = run_file(rec, rel)
    ck = load_checkpoint(path)
    hparams = ck.get("hyper_parameters", ck.get("hparams"))  # "hparams": few-shot runs before the runner merge
    module = rebuild(resolve(cmd.learner), hparams, ck.get("state_dict"), f"run {rec['id']}: {path.name}")
    module.eval()
    return module, cmd
