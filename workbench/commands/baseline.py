"""The baseline family: train one image classifier on an image folder (``kind: "baseline"``).

    {"name": "adam-small", "model": {"preset": "small_cnn"},
     "optimizer": {"name": "Adam", "params": {"lr": 0.001}}, "epochs": 5}

:meth:`TrainingCommand.from_dict` checks field names and types; :meth:`~TrainingCommand.validate`
then resolves every name through :mod:`workbench.registry`, constructs each component once and
dry-runs the model and the loss on one sample — reporting every problem it finds, each with the
field path, the offending value and the allowed choices — before a run exists.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from ..nets.builder import ModelSpec
from ..registry import Component, ConfigError, show
from .fields import MAX_IMAGE_SIDE, Bool, Command, PositiveInt, Section, Split, choice, expect, is_int, is_number

#: Metrics a command may monitor (early stopping, ReduceLROnPlateau).
MONITORS = ("val_loss", "val_accuracy", "train_loss")


def _side_ok(v: Any) -> bool:
    return is_int(v) and 0 < v <= MAX_IMAGE_SIDE


def _image_size_ok(v: Any) -> bool:
    return _side_ok(v) or (isinstance(v, list) and len(v) == 2 and all(_side_ok(x) for x in v))


def _early_stopping(v: Any) -> Any:
    return {} if v is True else (None if v is False else v)


class EarlyStopping(Section):
    """Lightning ``EarlyStopping`` options (``true`` = the defaults)."""

    monitor: Annotated[str, choice(MONITORS, "metric")] = "val_loss"
    patience: PositiveInt = 3
    mode: Annotated[Literal["min", "max"], choice(("min", "max"), "mode")] = "min"
    min_delta: Annotated[float, expect("a finite number", is_number, float)] = 0.0

    def model_post_init(self, context: Any) -> None:
        if "mode" not in self.model_fields_set and self.monitor.endswith("accuracy"):  # accuracy goes up
            self.mode = "max"


def _labels(v: Any) -> Any:
    if v is None:
        return v
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
        raise ConfigError("", f"expected a non-empty list of class names, got {show(v)}", v)
    dup = next((x for x in v if v.count(x) > 1), None)
    if dup is not None:
        raise ConfigError("", f"class {dup!r} is listed twice", v)
    return v


def _label_map(v: Any) -> Any:
    if v is None:
        return v
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) and x for k, x in v.items()):
        raise ConfigError("", f"expected an object mapping class folder names to label names, got {show(v)}", v)
    return v


Components = Annotated[list[Component], expect("a list", lambda v: isinstance(v, list))]


class TrainingCommand(Command):
    """Everything needed to train and test one image classifier, as data.

    Stored verbatim (``to_dict()``) in the run record, so ``from_dict(record["config"])``
    reproduces the run (with the stored seed and dataset fingerprint).
    """

    recipe = "workbench.learners.image_recipe:ImageRecipe"

    kind: Annotated[Literal["baseline"], expect("'baseline' (commands of other kinds: workbench.commands.parse)",
                                                lambda v: v == "baseline")] = "baseline"
    data: Annotated[str | None, expect("a folder path", lambda v: v is None or isinstance(v, (str, Path)),
                                       lambda v: None if v is None else str(v))] = None
    labels: Annotated[list[str] | None, BeforeValidator(_labels)] = None
    #: Target mapping: class folder → label (renames or merges classes before ``labels`` applies).
    label_map: Annotated[dict[str, str] | None, BeforeValidator(_label_map)] = None
    image_size: Annotated[Any, expect(f"a side from 1 to {MAX_IMAGE_SIDE} or [height, width]", _image_size_ok),
                          WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_IMAGE_SIDE},
                                                    {"type": "array", "items": {"type": "integer", "minimum": 1,
                                                                                "maximum": MAX_IMAGE_SIDE},
                                                     "minItems": 2, "maxItems": 2}]})] = 32
    channels: Annotated[int, expect("1 (grayscale) or 3 (RGB)", lambda v: is_int(v) and v in (1, 3))] = 3
    model: ModelSpec = Field(default_factory=ModelSpec)
    criterion: Component = Field(default_factory=lambda: Component("CrossEntropyLoss"))
    optimizer: Component = Field(default_factory=lambda: Component("Adam", {"lr": 1e-3}))
    scheduler: Component | None = None
    batch_size: PositiveInt = 32
    epochs: PositiveInt = 5
    split: Split = Field(default_factory=Split)
    pil_ops: Annotated[Components, BeforeValidator(lambda v: [] if v is None else v)] = []
    transforms: Annotated[Components, BeforeValidator(lambda v: [] if v is None else v)] = []
    eval_transforms: Annotated[Components, BeforeValidator(lambda v: [] if v is None else v)] = []
    early_stopping: Annotated[EarlyStopping | None, BeforeValidator(_early_stopping)] = None
    num_workers: Annotated[int, expect("an integer ≥ 0", lambda v: is_int(v) and v >= 0)] = 0
    top_k: PositiveInt = 3
    cache: Bool = True

    @property
    def learner(self) -> str:
        return "workbench.learners.classifier:ImageClassifier"

    @property
    def image_hw(self) -> tuple[int, int]:
        """Image (height, width)."""
        s = self.image_size
        return (int(s[0]), int(s[1])) if isinstance(s, list) else (int(s), int(s))

    def display_name(self) -> str:
        model = self.model.preset if self.model.layers is None else f"{len(self.model.layers)}layers"
        return f"{model}-{self.optimizer.name}"

    def check(self, data: Any = None) -> "TrainingCommand":
        """:meth:`validate` with the class count of the data folder when it exists (else 2), and
        against this machine."""
        from ..data.folders import scan_folder
        from .machine import check_threads, check_trainer

        root = data if data is not None else self.data
        n = None
        if root is not None and Path(root).expanduser().is_dir():
            n = len(scan_folder(root, self.labels, self.label_map)[0])
        self.validate(n)
        check_trainer(self.trainer)
        check_threads(self.threads)
        return self

    def fit_machine(self) -> dict[str, Any]:
        """:meth:`Command.fit_machine`, and DataLoader workers capped at the usable cores."""
        from .machine import clamp_workers

        adjusted = super().fit_machine()
        self.num_workers, note = clamp_workers(self.num_workers)
        return {**adjusted, "num_workers": note} if note else adjusted

    def validate(self, n_labels: int | None = None) -> "TrainingCommand":  # type: ignore[override]
        """Resolve every name, construct every component once and dry-run the model on one sample.

        ``n_labels`` defaults to ``len(labels)`` (or 2 when neither is known: the shapes are
        checked again with the real count before training). Raises :class:`ConfigError`
        listing every problem found.
        """
        from .. import runtime
        from . import dryrun

        # Dry runs initialise layers from torch's RNG: seeded and forked, so validating neither
        # disturbs a job's seeded init in another thread nor the caller's random stream.
        with runtime.seeded(0):
            problems = dryrun.problems(self, n_labels if n_labels is not None else len(self.labels or ()) or 2)
        if problems:
            raise ConfigError.collect(problems)
        return self
