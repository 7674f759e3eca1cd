"""What every command may ask of the runner around training (issue 15), for every kind alike:

    {"init_from": "adam-latin",                      # or {"run": ID|NAME, "checkpoint": "best",
                                                     #     "freeze_epochs": 2, "layers": ["features.*"]}
     "optimizer": {"name": "Adam", "params": {"lr": "find"}},   # Lightning's Tuner.lr_find first
     "lr_find": {"min_lr": 1e-6, "max_lr": 1.0, "num_training": 100},
     "loggers": ["tensorboard", "csv", "mlflow"],    # next to the run log's own logger
     "checkpoint_every_s": 30}                        # resumable checkpoints while training

These types only need :mod:`workbench.registry`, so :mod:`.fields` can declare them on the base
command without an import cycle. What they do lives in :mod:`workbench.training`,
:mod:`workbench.nets.transfer` and :mod:`workbench.exporters`.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from ..registry import Component, ConfigError, Strict, close_matches, show

#: Lightning loggers a command can run next to the run log's own (``WorkbenchLogger``).
LOGGERS = ("tensorboard", "csv", "mlflow")
#: ``optimizer.params.lr`` may be this word: the learning rate comes from Lightning's lr finder.
FIND = "find"
#: Which of the parent run's checkpoints initialises the model.
CHECKPOINTS = ("best", "last")
#: What happens to the parent's head (its last linear layer): ``auto`` loads it only into the
#: same learner over the same classes, ``load`` whenever the shapes match, ``reinit`` never.
HEADS = ("auto", "load", "reinit")


def _int_at_least(lo: int) -> BeforeValidator:
    def check(v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ConfigError("", f"expected an integer ≥ {lo}, got {show(v)}", v)
        return v
    return BeforeValidator(check)


def _positive(none: bool = False) -> BeforeValidator:
    def check(v: Any) -> Any:
        if v is None and none:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ConfigError("", f"expected a positive number{' or null' if none else ''}, got {show(v)}", v)
        return float(v)
    return BeforeValidator(check)


def _one_of(allowed: tuple[str, ...], what: str) -> BeforeValidator:
    def check(v: Any) -> Any:
        if v not in allowed:
            raise ConfigError("", f"unknown {what} {v!r}", v, list(allowed),
                              close_matches(str(v), list(allowed)) if isinstance(v, str) else [])
        return v
    return BeforeValidator(check)


class InitFrom(Strict):
    """Start from a past run's weights: the tensors whose shapes match are loaded."""

    #: The parent run: an id, a unique id prefix or a name (stored as the id it resolved to).
    run: Annotated[str, BeforeValidator(lambda v: v if isinstance(v, str) and v.strip() else _bad_run(v))]
    checkpoint: Annotated[Literal[CHECKPOINTS], _one_of(CHECKPOINTS, "checkpoint")] = "best"  # type: ignore[valid-type]
    #: Loaded tensors get no updates for this many epochs / optimizer steps (then train normally).
    freeze_epochs: Annotated[int, _int_at_least(0)] = 0
    freeze_steps: Annotated[int, _int_at_least(0)] = 0
    #: Only tensors whose name matches one of these glob patterns are loaded (null: all that fit).
    layers: Annotated[list[str] | None, BeforeValidator(lambda v: _patterns(v))] = None
    head: Annotated[Literal[HEADS], _one_of(HEADS, "head rule")] = "auto"  # type: ignore[valid-type]


def _bad_run(v: Any) -> Any:
    raise ConfigError("", f"expected a run id or name, got {show(v)}", v)


def _patterns(v: Any) -> Any:
    if v is None:
        return v
    if not isinstance(v, list) or not v or not all(isinstance(p, str) and p for p in v):
        raise ConfigError("", f"expected a non-empty list of tensor-name patterns such as 'features.*', got {show(v)}",
                          v)
    return v


def _init_from(v: Any) -> Any:
    if v is None or isinstance(v, dict):
        return v
    if isinstance(v, str):
        return {"run": v}
    raise ConfigError("", f"expected a run id or name, or an object with 'run', got {show(v)}", v)


#: The package each logger needs (the ``ecosystem`` extra: ``pip install 'workbench[ecosystem]'``).
_NEEDS = {"tensorboard": ("tensorboard", "tensorboardX"), "mlflow": ("mlflow",)}


def _loggers(v: Any) -> Any:
    import importlib.util

    if v is None:
        return []
    if not isinstance(v, list):
        raise ConfigError("", f"expected a list of logger names, got {show(v)}", v, list(LOGGERS))
    for i, name in enumerate(v):
        if name not in LOGGERS:
            raise ConfigError(f"[{i}]", f"unknown logger {name!r}", name, list(LOGGERS),
                              close_matches(str(name), list(LOGGERS)) if isinstance(name, str) else [])
        if v.index(name) != i:
            raise ConfigError(f"[{i}]", f"logger {name!r} is listed twice", name)
        needs = _NEEDS.get(name, ())
        if needs and not any(importlib.util.find_spec(m) for m in needs):
            raise ConfigError(f"[{i}]", f"logger {name!r} needs the {needs[0]} package: pip install"
                              " 'workbench[ecosystem]'", name)
    return v


class LrFind(Strict):
    """Options of Lightning's ``Tuner.lr_find`` when ``optimizer.params.lr`` is ``"find"``."""

    min_lr: Annotated[float, _positive()] = 1e-6
    max_lr: Annotated[float, _positive()] = 1.0
    #: Learning rates tried (one optimizer step each, from the model's initial weights).
    num_training: Annotated[int, _int_at_least(8)] = 100
    mode: Annotated[Literal["exponential", "linear"], _one_of(("exponential", "linear"), "mode")] = "exponential"
    #: Stop when the loss exceeds this many times the best loss so far (null: never).
    early_stop_threshold: Annotated[float | None, _positive(none=True)] = 4.0

    @model_validator(mode="after")
    def _range(self) -> "LrFind":
        if self.min_lr >= self.max_lr:
            raise ConfigError("min_lr", f"must be below max_lr ({self.max_lr:g}), got {self.min_lr:g}", self.min_lr)
        return self


InitFromField = Annotated[InitFrom | None, BeforeValidator(_init_from)]
LoggerList = Annotated[list[Literal[LOGGERS]], BeforeValidator(_loggers)]  # type: ignore[valid-type]
LrFindField = Annotated[LrFind, Field(default_factory=LrFind)]
CheckpointEvery = Annotated[float | None, _positive(none=True)]


def finds_lr(optimizer: Component) -> bool:
    """True when the command asks the lr finder for its learning rate."""
    return optimizer.params.get("lr") == FIND


def with_lr(optimizer: Component, lr: float) -> Component:
    """A copy of an optimizer component with ``lr`` set (what trains once the finder has answered)."""
    return Component(optimizer.name, {**optimizer.params, "lr": float(lr)})


def checkable(optimizer: Component) -> Component:
    """The optimizer as command checks construct it: ``"find"`` stands in as a typical number."""
    return with_lr(optimizer, 1e-3) if finds_lr(optimizer) else optimizer


__all__ = ["InitFrom", "LrFind", "LOGGERS", "FIND", "CHECKPOINTS", "HEADS", "InitFromField", "LoggerList",
           "LrFindField", "CheckpointEvery", "finds_lr", "with_lr", "checkable"]
