"""``init_from``: a run starts from a past run's weights, and its record says which (``lineage``).

    {"init_from": "adam-latin"}              # the run named adam-latin (its best checkpoint)
    {"init_from": {"run": "20261201-…", "checkpoint": "last", "freeze_epochs": 2}}

:func:`resolve` runs when the child's record is created (:func:`workbench.training.create_run`):
it finds the parent in the run log, checks that its checkpoint exists and that some of its
tensors fit the child's model — a wrong parent fails before a run exists — and returns the
``lineage`` the record stores: the parent's id, name and kind, which checkpoint and its SHA-256.
:func:`apply` loads the weights when training starts, refusing a checkpoint whose SHA-256
changed, and adds what was loaded and re-initialised to the lineage. The tensor matching is
:mod:`workbench.nets.transfer`; checkpoints are read only by ``nets.weights.load_checkpoint``
(``weights_only=True``).
"""
from __future__ import annotations

from typing import Any, Mapping

from . import runtime
from .commands import Command, parse
from .learners.loading import run_file
from .learners.recipe import Prepared, Recipe
from .nets import transfer
from .nets.weights import load_checkpoint
from .runlog.records import RunRecord
from .registry import ConfigError
from .runlog import RunLog, RunLogError

__all__ = ["resolve", "apply", "freeze_callback"]


def _parent(log: RunLog, cmd: Command) -> tuple[dict[str, Any], str]:
    spec = cmd.init_from
    try:
        rec = log.get(spec.run, metrics=False)
    except RunLogError as exc:
        raise ConfigError("init_from.run", str(exc), spec.run) from None
    who = f"run {rec['id']} ({rec.get('name')}, {rec.get('status')})"
    if rec.get("status") in ("queued", "running"):
        raise ConfigError("init_from.run", f"{who} is still training; start from it once it has ended", spec.run)
    arts = rec.get("artifacts") or {}
    rel = arts.get("checkpoint") if spec.checkpoint == "best" else arts.get("last_checkpoint")
    if not rel:
        have = [k for k in ("checkpoint", "last_checkpoint") if arts.get(k)]
        raise ConfigError("init_from.checkpoint", f"{who} has no {spec.checkpoint} checkpoint"
                          + (f" (it has: {', '.join('best' if k == 'checkpoint' else 'last' for k in have)})"
                             if have else ""), spec.checkpoint, ["best", "last"] if have else None)
    try:
        path = run_file(rec, rel)
    except ValueError as exc:
        raise ConfigError("init_from.run", str(exc), spec.run) from None
    if not path.is_file():
        raise ConfigError("init_from.run", f"{who}: checkpoint {rel} is missing from its folder", spec.run)
    return rec, rel


def resolve(log: RunLog, recipe: Recipe, prepared: Prepared) -> dict[str, Any] | None:
    """The ``lineage`` record field of a command with ``init_from`` (None without one).

    Raises :class:`~workbench.registry.ConfigError` naming ``init_from`` when the parent does
    not exist, has no checkpoint, or none of its tensors fits the child's model. Stores the
    parent's id in ``prepared.command.init_from.run`` (a name can later mean another run).
    """
    cmd = prepared.command
    if cmd.init_from is None:
        return None
    rec, rel = _parent(log, cmd)
    path = run_file(rec, rel)
    lineage = {"parent": rec["id"], "parent_name": rec.get("name"), "parent_kind": rec.get("kind"),
               "parent_status": rec.get("status"), "checkpoint": rel, "sha256": transfer.sha256(path),
               "options": {k: v for k, v in cmd.init_from.to_dict().items() if k != "run"}}
    score = RunRecord.from_dict(rec).score()
    if score is not None:
        lineage["parent_score"] = {"key": score.key, "value": score.value}
    with runtime.seeded(cmd.seed):
        module = recipe.build(prepared)
    plan = _plan(module, prepared, rec, load_checkpoint(path))
    if not plan.pairs:
        worst = next(iter(plan.shape_mismatch.items()), None)
        why = f"e.g. {worst[0]} is {worst[1][0]} here and {worst[1][1]} there" if worst else \
            "no tensor names in common"
        raise ConfigError("init_from.run", f"no tensor of run {rec['id']} ({rec.get('name')}) fits this model ({why})",
                          cmd.init_from.run)
    cmd.init_from.run = rec["id"]
    return lineage


def _plan(module: Any, prepared: Prepared, parent_rec: Mapping[str, Any], ck: Mapping[str, Any]) -> transfer.TransferPlan:
    spec = prepared.command.init_from
    hp = ck.get("hyper_parameters", ck.get("hparams")) or {}
    same = parse(parent_rec["config"]).learner == prepared.command.learner
    mine = getattr(module, "hparams", {}) or {}
    return transfer.match(ck["state_dict"], module, same_learner=same, layers=spec.layers, head=spec.head,
                          parent_classes=hp.get("classes"), child_classes=mine.get("classes"))


def apply(module: Any, prepared: Prepared, lineage: Mapping[str, Any], log: RunLog) -> dict[str, Any]:
    """Load the parent's matching tensors into ``module`` (in place); the completed lineage."""
    try:
        rec = log.get(lineage["parent"], metrics=False)
        path = run_file(rec, lineage["checkpoint"])
    except (RunLogError, ValueError) as exc:
        raise RuntimeError(f"init_from: parent run {lineage['parent']} cannot be read: {exc}") from None
    if not path.is_file() or transfer.sha256(path) != lineage["sha256"]:
        raise RuntimeError(f"init_from: the checkpoint {lineage['checkpoint']} of run {lineage['parent']} changed"
                           f" or is gone since this run was created (SHA-256 {lineage['sha256'][:12]}…)")
    ck = load_checkpoint(path)
    plan = _plan(module, prepared, rec, ck)
    transfer.load(module, ck["state_dict"], plan)
    return {**lineage, **plan.to_record()}


def freeze_callback(module: Any, lineage: Mapping[str, Any] | None) -> Any:
    """The callback holding loaded tensors still for ``freeze_epochs`` / ``freeze_steps`` (or None)."""
    opts = (lineage or {}).get("options") or {}
    if not (opts.get("freeze_epochs") or opts.get("freeze_steps")):
        return None
    loaded = set(lineage.get("loaded") or ())
    names = [n for n, _ in module.named_parameters() if n in loaded]
    return transfer.FreezeLoaded(names, opts.get("freeze_epochs", 0), opts.get("freeze_steps", 0))
