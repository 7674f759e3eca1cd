"""What every training command shares: field types with our messages, and the common fields.

Field types are ``Annotated`` types whose check runs *before* pydantic's own (strict) one, so a
bad value is reported in the command language's words — ``epochs: expected a positive
integer, got '5' (str)`` — with the allowed values and close matches where there is a choice.
Pydantic collects every problem of a command at once and gives the JSON Schema for free.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Callable, ClassVar, Iterable, Literal, Mapping

from pydantic import BeforeValidator, Field, ValidationError, WithJsonSchema, model_validator

from ..pilops import MAX_PIL_SIDE
from ..registry import ConfigError, Strict, close_matches, from_validation_error, show
from .limits import plain, read_command_file, read_json
from .runner_options import CheckpointEvery, InitFromField, LoggerList, LrFindField

PRECISIONS = ("32-true", "32", "16", "bf16", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "64-true", "64",
              "transformer-engine")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
#: Lightning 2 strategy names (``dp`` and ``horovod`` are gone from Lightning 2; whether one is
#: usable on this machine — ``deepspeed`` installed, ``fsdp`` on a GPU — is checked before a run).
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "fsdp", "deepspeed",
              "ddp_find_unused_parameters_true", "ddp_find_unused_parameters_false", "single_device")
#: Seeds are what numpy, torch and Lightning all accept: 0 … 2**32 - 1.
MAX_SEED = 2 ** 32 - 1
#: Largest image side a command may ask for (an 81-megapixel decode is not a training image).
MAX_IMAGE_SIDE = MAX_PIL_SIDE  # one limit for image sizes and for what PIL operations make


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return (is_int(v) or isinstance(v, float)) and math.isfinite(v)


def expect(what: str, ok: Callable[[Any], bool], convert: Callable[[Any], Any] = lambda v: v) -> BeforeValidator:
    """A check in our words: ``expected <what>, got <value>`` unless ``ok(value)``."""
    def check(v: Any) -> Any:
        if not ok(v):
            raise ConfigError("", f"expected {what}, got {show(v)}", v)
        return convert(v)
    return BeforeValidator(check)


def choice(allowed: Iterable[Any], what: str = "value") -> BeforeValidator:
    """One of ``allowed``; otherwise ``unknown <what> 'x'; did you mean …? (allowed: …)``."""
    allowed = tuple(allowed)

    def check(v: Any) -> Any:
        if v not in allowed or isinstance(v, bool) != any(isinstance(a, bool) and a == v for a in allowed):
            raise ConfigError("", f"unknown {what} {v!r}", v, list(allowed),
                              close_matches(str(v), [str(a) for a in allowed]) if isinstance(v, str) else [])
        return v
    return BeforeValidator(check)


def at_least(lo: int, none: bool = False) -> Any:
    """An integer ≥ ``lo`` (or null when ``none``)."""
    what = ("a positive integer" if lo == 1 else f"an integer ≥ {lo}") + (" or null" if none else "")
    ok = (lambda v: v is None or (is_int(v) and v >= lo)) if none else (lambda v: is_int(v) and v >= lo)
    inner = Annotated[int, Field(ge=lo)]  # the bound is for the JSON Schema; expect() checks first
    return Annotated[inner | None if none else inner, expect(what, ok)]


def number_at_least(lo: float, none: bool = False) -> Any:
    """A number ≥ ``lo`` (ints accepted, stored as float; null when ``none``)."""
    what = f"a number ≥ {lo:g}" + (" or null" if none else "")
    ok = (lambda v: v is None or (is_number(v) and v >= lo)) if none else (lambda v: is_number(v) and v >= lo)
    inner = Annotated[float, Field(ge=lo)]
    return Annotated[inner | None if none else inner, expect(what, ok, lambda v: None if v is None else float(v))]


PositiveInt = at_least(1)
Integer = Annotated[int, expect("an integer", is_int)]
Seed = Annotated[int, expect(f"an integer from 0 to {MAX_SEED} (2**32 - 1)",
                             lambda v: is_int(v) and 0 <= v <= MAX_SEED),
                 Field(ge=0, le=MAX_SEED)]
Bool = Annotated[bool, expect("true or false", lambda v: isinstance(v, bool))]
Fraction = Annotated[float, expect("a fraction between 0 and 1", lambda v: is_number(v) and 0 <= v <= 1, float),
                     Field(ge=0, le=1)]
Text = Annotated[str, expect("a string", lambda v: isinstance(v, str))]
OptionalText = Annotated[str | None, expect("a string", lambda v: v is None or isinstance(v, str))]
PositiveOrNone = Annotated[float | None, expect("a positive number", lambda v: v is None or (is_number(v) and v > 0))]
#: Lightning's batch limits: a fraction of the batches, or a count (kept an int: 5.0 would be a bad fraction).
BatchLimit = Annotated[int | float | None,
                       expect("a fraction of the batches (0 < x ≤ 1.0) or a number of batches (an integer ≥ 1)",
                              lambda v: v is None or (is_int(v) and v >= 1)
                              or (isinstance(v, float) and math.isfinite(v) and 0 < v <= 1))]


class Section(Strict):
    """A nested part of a command; problems inside it are reported under its path."""


class Split(Section):
    """Fractions of each class going to train / val / test (seeded, stratified)."""

    train: Fraction = 0.7
    val: Fraction = 0.15
    test: Fraction = 0.15

    @model_validator(mode="after")
    def _adds_up(self) -> "Split":
        if self.train <= 0:
            raise ConfigError("train", "the training fraction must be above 0", self.train)
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ConfigError("", f"fractions must add up to 1, got {total:g}", self.to_dict())
        return self


def _devices_ok(v: Any) -> bool:
    return (v == "auto" or (is_int(v) and (v >= 1 or v == -1))
            or (isinstance(v, list) and bool(v) and all(is_int(x) for x in v)))


class TrainerOptions(Section):
    """Options passed straight to ``pl.Trainer`` (so a command scales out with Lightning's DDP)."""

    accelerator: Annotated[Literal[ACCELERATORS], choice(ACCELERATORS, "accelerator")] = "auto"  # type: ignore[valid-type]
    devices: Annotated[Any, expect("'auto', a count ≥ 1, -1 or a list of device indices", _devices_ok),
                       WithJsonSchema({"anyOf": [{"const": "auto"}, {"type": "integer"},
                                                 {"type": "array", "items": {"type": "integer"}}]})] = "auto"
    strategy: Annotated[Literal[STRATEGIES], choice(STRATEGIES, "strategy")] = "auto"  # type: ignore[valid-type]
    num_nodes: PositiveInt = 1
    precision: Annotated[Literal[PRECISIONS], choice(PRECISIONS, "precision"),  # type: ignore[valid-type]
                         BeforeValidator(lambda v: str(v) if is_int(v) else v)] = "32-true"  # (runs first: 16 → "16")
    log_every_n_steps: PositiveInt = 1
    gradient_clip_val: PositiveOrNone = None
    limit_train_batches: BatchLimit = None
    limit_val_batches: BatchLimit = None
    deterministic: Annotated[bool | None, expect("true or false", lambda v: v is None or isinstance(v, bool))] = None

    def trainer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``pl.Trainer`` (unset options left to Lightning's defaults)."""
        return {k: v for k, v in self.to_dict().items() if v is not None}

    def needs_processes(self) -> bool:
        """True when Lightning will start several processes for these options (DDP and friends)."""
        d = self.devices
        many = (is_int(d) and d != 1) or (isinstance(d, list) and len(d) > 1)
        multi_strategy = self.strategy.startswith(("ddp", "fsdp", "deepspeed")) and self.strategy != "ddp_notebook"
        return self.num_nodes > 1 or multi_strategy or many


class Command(Strict):
    """The part every training command has, whatever its kind.

    A family subclasses it (:class:`~workbench.commands.baseline.TrainingCommand`,
    :class:`~workbench.commands.fewshot.FewShotCommand`) and names the recipe the one runner
    uses for it (``recipe``: ``"module:Class"``, resolved by :mod:`workbench.training`).
    """

    recipe: ClassVar[str] = ""

    kind: str
    name: OptionalText = None
    seed: Seed = 0
    trainer: TrainerOptions = Field(default_factory=TrainerOptions)
    #: Intra-op threads for the job (null: the calling thread's). Runs are bit-identical only
    #: at the same count.
    threads: at_least(1, none=True) = None  # type: ignore[valid-type]
    #: Stop training (status ``trained``, ``stop_reason: time_limit``) after this many seconds.
    time_limit_s: number_at_least(1, none=True) = None  # type: ignore[valid-type]
    # What the runner does around training (issue 15; the types live in runner_options.py).
    init_from: InitFromField = None
    loggers: LoggerList = []
    lr_find: LrFindField
    checkpoint_every_s: CheckpointEvery = 30.0

    # -- JSON --------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | "Command") -> "Command":
        """Parse a dict, reporting every problem of it in one :class:`ConfigError`."""
        if isinstance(d, cls):
            return d.model_copy(deep=True)
        if not isinstance(d, Mapping):
            raise ConfigError("", f"a training command is a JSON object, got {show(d)}", d)
        try:
            return cls.model_validate(plain(d))
        except ValidationError as exc:
            raise from_validation_error(exc, cls) from None

    @classmethod
    def from_json(cls, text: str) -> "Command":
        return cls.from_dict(read_json(text))

    @classmethod
    def load(cls, path: str | Path) -> "Command":
        """Read a command from a JSON file (bounded: see :func:`~.limits.read_command_file`)."""
        return cls.from_dict(read_command_file(path))

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    # -- what the runner asks every command ---------------------------------------------
    @property
    def learner(self) -> str:
        """``"module:Class"`` of the LightningModule this command trains."""
        raise NotImplementedError

    def display_name(self) -> str:
        """The run name when the command gives none."""
        return self.kind

    def needs_processes(self) -> bool:
        """True when the command trains in several processes (a subprocess job)."""
        return self.trainer.needs_processes()

    def validate(self, n_labels: int | None = None) -> "Command":  # type: ignore[override]
        """Checks beyond the field types (names in registries, dry runs); returns ``self``."""
        return self

    def check(self, data: Any = None) -> "Command":
        """:meth:`validate` against the data when it can be looked at cheaply, and against this
        machine (:func:`.machine.check_trainer`); returns ``self``."""
        from .machine import check_threads, check_trainer

        self.validate()
        check_trainer(self.trainer)
        check_threads(self.threads)
        return self

    def fit_machine(self) -> dict[str, Any]:
        """Check the command can train on this machine and adjust what may be adjusted (in place).

        Raises :class:`ConfigError` for what cannot run here (an absent GPU, more processes than
        cores, an uninstalled strategy or precision plugin); returns the record's ``adjusted``
        field (``{field: {"asked", "used", "why"}}``, empty when nothing changed).
        """
        from .machine import check_threads, check_trainer

        check_trainer(self.trainer)
        check_threads(self.threads)
        return {}

    def problems(self, n_labels: int | None = None) -> list[str]:
        """Validation messages (empty when valid); for editors that show, not raise."""
        try:
            self.validate(n_labels)
        except ConfigError as exc:
            return [p.message for p in exc.problems]
        return []
