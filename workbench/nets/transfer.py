"""Start a model from another run's weights: shape-matching partial load, head re-init, freezing.

    plan = match(parent_state, child_module, parent_hparams, child_hparams, spec)
    load(child_module, parent_state, plan)            # copies the matched tensors
    FreezeLoaded(plan.frozen_names(), epochs=2)       # a Lightning callback: no updates at first

**Matching.** A child tensor takes the parent tensor of the same name, or — when the learners
differ (a baseline ``ImageClassifier`` keeps its net under ``model.``, MAML under ``net.``,
ProtoNet under ``encoder.``) — of the same name below that first part, when exactly one parent
tensor has it; and only when the shapes are equal. So a Conv-4 trained by any kind initialises
a Conv-4 of any other kind: ``features.*`` match, BatchNorm running statistics come along
where both keep them.

**The head** is the child's last ``nn.Linear``. With ``head="auto"`` it is loaded only into the
same learner class trained over the same classes (a MAML head meta-learned for N-way tasks, a
classifier continued on its own labels); otherwise it keeps its fresh, seeded initialisation —
always when the number of labels differs, since then the shapes differ. The plan says which
tensors were loaded, which re-initialised and why.

**Freezing** drops the gradients of loaded tensors before each optimizer step for the first
``freeze_epochs`` epochs / ``freeze_steps`` steps, so they keep the parent's values while the
rest (the new head) adapts. Dropping gradients rather than setting ``requires_grad=False`` works
for every learner, MAML's functional inner loop included; BatchNorm statistics keep updating.
"""
from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn

__all__ = ["TransferPlan", "match", "load", "head_names", "sha256", "FreezeLoaded"]


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (a parent checkpoint's identity in the child's record)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def head_names(module: nn.Module) -> list[str]:
    """State-dict names of the module's head: the parameters of its last ``nn.Linear`` (if any)."""
    last = None
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            last = name
    if last is None:
        return []
    return [f"{last}.{p}" for p, _ in module.get_submodule(last).named_parameters(recurse=False)]


def _tail(name: str) -> str:
    return name.split(".", 1)[1] if "." in name else name


@dataclass
class TransferPlan:
    """Which child tensors come from which parent tensors, and why the others do not."""

    pairs: dict[str, str] = field(default_factory=dict)        #: child name → parent name (loaded)
    head: list[str] = field(default_factory=list)               #: the child's head tensors
    head_reason: str = ""                                       #: why the head was (not) loaded
    shape_mismatch: dict[str, list[list[int]]] = field(default_factory=dict)  #: child → [child, parent] shape
    not_in_parent: list[str] = field(default_factory=list)      #: child tensors with no parent tensor
    excluded: list[str] = field(default_factory=list)           #: left out by ``layers`` or the head rule
    unused: list[str] = field(default_factory=list)             #: parent tensors nothing took

    @property
    def reinitialised(self) -> list[str]:
        """Child tensors that keep their fresh initialisation."""
        return sorted(set(self.shape_mismatch) | set(self.not_in_parent) | set(self.excluded))

    def frozen_names(self, parameters: Iterable[str]) -> list[str]:
        """The loaded tensors among ``parameters`` (what freezing holds still)."""
        return [n for n in parameters if n in self.pairs]

    def to_record(self) -> dict[str, Any]:
        """The lineage fields describing this plan (JSON)."""
        return {"loaded": sorted(self.pairs), "reinitialised": self.reinitialised, "head": self.head,
                "head_reason": self.head_reason, "shape_mismatch": self.shape_mismatch,
                "unused_from_parent": len(self.unused)}


def _head_rule(rule: str, head: Sequence[str], same_learner: bool, parent_classes: Any, child_classes: Any) -> str:
    """``"load"`` or why the head is re-initialised."""
    if not head:
        return "load"
    if rule == "reinit":
        return "re-initialised (head: reinit)"
    if rule == "load":
        return "load"
    if not same_learner:
        return "re-initialised: another kind of learner trained the parent's head"
    if parent_classes is not None and child_classes is not None and list(parent_classes) != list(child_classes):
        return "re-initialised: the parent's head scores other classes"
    return "load"


def match(parent: Mapping[str, torch.Tensor], child: nn.Module, *, same_learner: bool,
          layers: Sequence[str] | None = None, head: str = "auto", parent_classes: Any = None,
          child_classes: Any = None) -> TransferPlan:
    """Plan which tensors of ``parent`` (a state dict) initialise ``child`` (see the module doc)."""
    mine = child.state_dict()
    by_tail: dict[str, list[str]] = {}
    for name in parent:
        by_tail.setdefault(_tail(name), []).append(name)
    plan = TransferPlan(head=head_names(child))
    rule = _head_rule(head, plan.head, same_learner, parent_classes, child_classes)
    taken: set[str] = set()
    for name, t in mine.items():
        src = name if name in parent else None
        if src is None and not same_learner:
            cands = by_tail.get(_tail(name), [])
            src = cands[0] if len(cands) == 1 else None
        if src is None:
            plan.not_in_parent.append(name)
            continue
        if tuple(parent[src].shape) != tuple(t.shape):
            plan.shape_mismatch[name] = [list(t.shape), list(parent[src].shape)]
            continue
        if (layers and not any(fnmatch.fnmatchcase(n, p) for p in layers for n in (name, _tail(name)))) or \
                (name in plan.head and rule != "load"):
            plan.excluded.append(name)
            continue
        plan.pairs[name] = src
        taken.add(src)
    plan.unused = [n for n in parent if n not in taken]
    if not plan.head:
        plan.head_reason = "no head (the learner has no linear layer)"
    elif any(h in plan.pairs for h in plan.head):
        plan.head_reason = "loaded from the parent"
    elif any(h in plan.shape_mismatch for h in plan.head):
        shapes = plan.shape_mismatch[next(h for h in plan.head if h in plan.shape_mismatch)]
        plan.head_reason = f"re-initialised: {shapes[1][0]} outputs in the parent, {shapes[0][0]} here"
    else:
        plan.head_reason = rule if rule != "load" else "re-initialised: not in the parent"
    return plan


def load(child: nn.Module, parent: Mapping[str, torch.Tensor], plan: TransferPlan) -> int:
    """Copy the planned tensors into ``child`` (in place); returns how many values were copied."""
    state = child.state_dict()
    n = 0
    with torch.no_grad():
        for name, src in plan.pairs.items():
            state[name].copy_(parent[src].to(state[name].dtype))
            n += state[name].numel()
    return n


def _freezer_base() -> type:
    import pytorch_lightning as pl

    return pl.Callback


class FreezeLoaded(_freezer_base()):  # type: ignore[misc]
    """Hold the named parameters at their loaded values for the first epochs / steps.

    Their gradients are dropped before each optimizer step (the optimizer skips a parameter
    without a gradient), so the decision depends only on the trainer's epoch and step — a
    resumed run freezes exactly as the uninterrupted one would have.
    """

    def __init__(self, names: Iterable[str], epochs: int = 0, steps: int = 0) -> None:
        self.names = set(names)
        self.epochs, self.steps = int(epochs), int(steps)

    def frozen_now(self, trainer: Any) -> bool:
        return trainer.current_epoch < self.epochs or trainer.global_step < self.steps

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if not self.names or not self.frozen_now(trainer):
            return
        for name, p in pl_module.named_parameters():
            if name in self.names:
                p.grad = None
