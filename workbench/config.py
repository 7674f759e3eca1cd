"""Training commands as data: typed, JSON round-trip, validated before anything trains.

A command is what a user writes (a dict / JSON file / the train panel's editor)::

    {"name": "adam-small", "model": {"preset": "small_cnn"},
     "optimizer": {"name": "Adam", "params": {"lr": 0.001}}, "epochs": 5}

``TrainingCommand.from_dict(d)`` checks types and field names; ``.validate(n_labels=…)``
then resolves every name through :mod:`workbench.registry`, constructs each component
once and dry-runs the model on one sample, so a bad command fails here with the field
path, the offending value and the allowed choices — before a run exists.
"""
from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

from .registry import close_matches

#: Kinds handled by :mod:`workbench.learners.fewshot` (the rest of the command is theirs to check).
FEWSHOT_KINDS = ("maml", "fomaml", "metasgd", "protonet", "finetune")
KINDS = ("baseline", *FEWSHOT_KINDS)
PRECISIONS = ("32-true", "32", "16", "bf16", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "64-true", "64",
              "transformer-engine")
_MAX_ALLOWED_SHOWN = 12


class ConfigError(ValueError):
    """A training command problem: which field (``path``), what was given (``value``) and what is allowed."""

    def __init__(self, path: str, message: str, value: Any = None, allowed: Iterable[Any] | None = None,
                 suggestions: Iterable[str] = ()) -> None:
        self.path = path
        self.value = value
        self.allowed = list(allowed) if allowed is not None else None
        self.suggestions = list(suggestions)
        text = f"{path}: {message}" if path else message
        if self.suggestions:
            text += f"; did you mean {' or '.join(repr(s) for s in self.suggestions)}?"
        if self.allowed:
            shown = ", ".join(str(a) for a in self.allowed[:_MAX_ALLOWED_SHOWN])
            more = len(self.allowed) - _MAX_ALLOWED_SHOWN
            text += f" (allowed: {shown}{f', … {more} more' if more > 0 else ''})"
        self.message = text
        super().__init__(text)


def unknown_name(path: str, value: Any, allowed: list[str], what: str) -> ConfigError:
    """The error for a name not in a registry, with close matches."""
    return ConfigError(path, f"unknown {what} {value!r}", value, sorted(allowed),
                       close_matches(str(value), allowed))


# -- small typed pieces ---------------------------------------------------------------

@dataclass
class Component:
    """A registry name plus constructor keyword arguments (a layer, loss, optimizer, transform …)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": copy.deepcopy(self.params)}

    @classmethod
    def parse(cls, d: Any, path: str) -> "Component":
        """Accept ``"ReLU"``, ``{"name": .., "params": {..}}`` or the flat ``{"name": .., "lr": ..}``."""
        if isinstance(d, Component):
            return d
        if isinstance(d, str):
            return cls(d, {})
        if not isinstance(d, Mapping):
            raise ConfigError(path, f"expected a name or an object with 'name' and 'params', got {_show(d)}", d)
        if "name" not in d:
            raise ConfigError(path, "missing 'name'", dict(d))
        name = d["name"]
        if not isinstance(name, str):
            raise ConfigError(f"{path}.name", f"expected a string, got {_show(name)}", name)
        if "params" in d:
            extra = sorted(set(d) - {"name", "params"})
            if extra:
                raise ConfigError(f"{path}.{extra[0]}", "unexpected key next to 'params' (put it inside 'params')",
                                  d[extra[0]], ["name", "params"])
            params = d["params"]
            if params is None:
                params = {}
            if not isinstance(params, Mapping):
                raise ConfigError(f"{path}.params", f"expected an object, got {_show(params)}", params)
        else:
            params = {k: v for k, v in d.items() if k != "name"}
        return cls(name, dict(copy.deepcopy(params)))


@dataclass
class ModelSpec:
    """A preset (``small_cnn``, ``conv4``, ``resnet18``) with params, or a list of layers."""

    preset: str | None = "small_cnn"
    params: dict[str, Any] = field(default_factory=dict)
    layers: list[Component] | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.layers is not None:
            return {"layers": [c.to_dict() for c in self.layers]}
        return {"preset": self.preset, "params": copy.deepcopy(self.params)}

    @classmethod
    def parse(cls, d: Any, path: str = "model") -> "ModelSpec":
        if isinstance(d, ModelSpec):
            return d
        if isinstance(d, str):
            return cls(preset=d)
        if isinstance(d, list):
            d = {"layers": d}
        if not isinstance(d, Mapping):
            raise ConfigError(path, f"expected a preset name, a list of layers or an object, got {_show(d)}", d)
        _check_keys(d, ("preset", "params", "layers"), path)
        if "layers" in d and d.get("layers") is not None:
            if d.get("preset") is not None:
                raise ConfigError(f"{path}.preset", "give either 'preset' or 'layers', not both", d["preset"])
            layers = d["layers"]
            if not isinstance(layers, list) or not layers:
                raise ConfigError(f"{path}.layers", f"expected a non-empty list of layers, got {_show(layers)}",
                                  layers)
            return cls(preset=None, layers=[Component.parse(x, f"{path}.layers[{i}]") for i, x in enumerate(layers)])
        preset = d.get("preset", "small_cnn")
        if not isinstance(preset, str):
            raise ConfigError(f"{path}.preset", f"expected a string, got {_show(preset)}", preset)
        params = d.get("params") or {}
        if not isinstance(params, Mapping):
            raise ConfigError(f"{path}.params", f"expected an object, got {_show(params)}", params)
        return cls(preset=preset, params=dict(params))


@dataclass
class Split:
    """Fractions of each class going to train / val / test (seeded, stratified)."""

    train: float = 0.7
    val: float = 0.15
    test: float = 0.15

    def to_dict(self) -> dict[str, float]:
        return {"train": self.train, "val": self.val, "test": self.test}


@dataclass
class EarlyStopping:
    """Lightning ``EarlyStopping`` options."""

    monitor: str = "val_loss"
    patience: int = 3
    mode: str = "min"
    min_delta: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "patience": self.patience, "mode": self.mode, "min_delta": self.min_delta}


@dataclass
class TrainerOptions:
    """Options passed straight to ``pl.Trainer`` (so a command scales out with Lightning's DDP)."""

    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    log_every_n_steps: int = 1
    gradient_clip_val: float | None = None
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    deterministic: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}

    def trainer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``pl.Trainer`` (unset options left to Lightning's defaults)."""
        return {k: v for k, v in self.to_dict().items() if v is not None}


# -- the command ------------------------------------------------------------------------

@dataclass
class TrainingCommand:
    """Everything needed to train and test one classifier, as data.

    Stored verbatim (``to_dict()``) in the run record, so ``from_dict(record["config"])``
    reproduces the run (with the stored seed and dataset fingerprint).
    """

    kind: str = "baseline"
    name: str | None = None
    data: str | None = None
    labels: list[str] | None = None
    #: Target mapping: class folder → label (renames or merges classes before ``labels`` applies).
    label_map: dict[str, str] | None = None
    image_size: int | list[int] = 32
    channels: int = 3
    model: ModelSpec = field(default_factory=ModelSpec)
    criterion: Component = field(default_factory=lambda: Component("CrossEntropyLoss"))
    optimizer: Component = field(default_factory=lambda: Component("Adam", {"lr": 1e-3}))
    scheduler: Component | None = None
    batch_size: int = 32
    epochs: int = 5
    seed: int = 0
    split: Split = field(default_factory=Split)
    pil_ops: list[Component] = field(default_factory=list)
    transforms: list[Component] = field(default_factory=list)
    eval_transforms: list[Component] = field(default_factory=list)
    early_stopping: EarlyStopping | None = None
    trainer: TrainerOptions = field(default_factory=TrainerOptions)
    num_workers: int = 0
    top_k: int = 3
    cache: bool = True
    #: Fields of few-shot kinds, kept verbatim for :mod:`workbench.learners.fewshot`.
    extra: dict[str, Any] = field(default_factory=dict)

    # -- (de)serialisation ---------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``from_dict(to_dict())`` gives an equal command."""
        if self.kind in FEWSHOT_KINDS:
            return {"kind": self.kind, **copy.deepcopy(self.extra)}
        d: dict[str, Any] = {
            "kind": self.kind, "name": self.name, "data": self.data,
            "labels": list(self.labels) if self.labels is not None else None,
            "label_map": dict(self.label_map) if self.label_map is not None else None,
            "image_size": list(self.image_size) if isinstance(self.image_size, (list, tuple)) else self.image_size,
            "channels": self.channels, "model": self.model.to_dict(), "criterion": self.criterion.to_dict(),
            "optimizer": self.optimizer.to_dict(),
            "scheduler": self.scheduler.to_dict() if self.scheduler else None,
            "batch_size": self.batch_size, "epochs": self.epochs, "seed": self.seed,
            "split": self.split.to_dict(), "pil_ops": [c.to_dict() for c in self.pil_ops],
            "transforms": [c.to_dict() for c in self.transforms],
            "eval_transforms": [c.to_dict() for c in self.eval_transforms],
            "early_stopping": self.early_stopping.to_dict() if self.early_stopping else None,
            "trainer": self.trainer.to_dict(), "num_workers": self.num_workers, "top_k": self.top_k,
            "cache": self.cache,
        }
        return d

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "TrainingCommand":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                              text[:80]) from None
        return cls.from_dict(d)

    @classmethod
    def load(cls, path: str | Path) -> "TrainingCommand":
        """Read a command from a JSON file."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | "TrainingCommand") -> "TrainingCommand":
        """Parse a dict, checking field names and types (names are resolved by :meth:`validate`)."""
        if isinstance(d, TrainingCommand):
            return copy.deepcopy(d)
        if not isinstance(d, Mapping):
            raise ConfigError("", f"a training command is a JSON object, got {_show(d)}", d)
        d = copy.deepcopy(dict(d))
        kind = d.get("kind", "baseline")
        if kind not in KINDS:
            raise ConfigError("kind", f"unknown kind {kind!r}", kind, KINDS, close_matches(str(kind), list(KINDS)))
        if kind in FEWSHOT_KINDS:
            # A few-shot command belongs to workbench.learners.fewshot: kept verbatim, checked there.
            return cls(kind=kind, extra={k: v for k, v in d.items() if k != "kind"})
        _check_keys(d, [f.name for f in fields(cls) if f.name != "extra"], "")
        cmd = cls(kind=kind)
        if d.get("name") is not None:
            cmd.name = _typed(d["name"], str, "name", "a string")
        if d.get("data") is not None:
            cmd.data = str(_typed(d["data"], (str, Path), "data", "a folder path"))
        if d.get("labels") is not None:
            labels = d["labels"]
            if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
                raise ConfigError("labels", f"expected a non-empty list of class names, got {_show(labels)}", labels)
            if len(set(labels)) != len(labels):
                dup = next(x for x in labels if labels.count(x) > 1)
                raise ConfigError("labels", f"class {dup!r} is listed twice", labels)
            cmd.labels = list(labels)
        if d.get("label_map") is not None:
            lm = d["label_map"]
            if not isinstance(lm, Mapping) or not all(isinstance(k, str) and isinstance(v, str) and v
                                                      for k, v in lm.items()):
                raise ConfigError("label_map", "expected an object mapping class folder names to label names,"
                                  f" got {_show(lm)}", lm)
            cmd.label_map = dict(lm)
        if "image_size" in d:
            cmd.image_size = _image_size(d["image_size"])
        if "channels" in d:
            cmd.channels = _typed(d["channels"], int, "channels", "1 or 3")
            if cmd.channels not in (1, 3):
                raise ConfigError("channels", "expected 1 (grayscale) or 3 (RGB)", cmd.channels, [1, 3])
        if "model" in d:
            cmd.model = ModelSpec.parse(d["model"])
        if "criterion" in d:
            cmd.criterion = Component.parse(d["criterion"], "criterion")
        if "optimizer" in d:
            cmd.optimizer = Component.parse(d["optimizer"], "optimizer")
        if d.get("scheduler") is not None:
            cmd.scheduler = Component.parse(d["scheduler"], "scheduler")
        for key in ("batch_size", "epochs"):
            if key in d:
                setattr(cmd, key, _positive_int(d[key], key))
        if "seed" in d:
            cmd.seed = _typed(d["seed"], int, "seed", "an integer")
        if "num_workers" in d:
            cmd.num_workers = _typed(d["num_workers"], int, "num_workers", "an integer ≥ 0")
            if cmd.num_workers < 0:
                raise ConfigError("num_workers", "must be ≥ 0", cmd.num_workers)
        if "top_k" in d:
            cmd.top_k = _positive_int(d["top_k"], "top_k")
        if "cache" in d:
            cmd.cache = _typed(d["cache"], bool, "cache", "true or false")
        if "split" in d:
            cmd.split = _split(d["split"])
        for key in ("pil_ops", "transforms", "eval_transforms"):
            if d.get(key) is not None:
                v = d[key]
                if not isinstance(v, list):
                    raise ConfigError(key, f"expected a list, got {_show(v)}", v)
                setattr(cmd, key, [Component.parse(x, f"{key}[{i}]") for i, x in enumerate(v)])
        if d.get("early_stopping") is not None:
            cmd.early_stopping = _early_stopping(d["early_stopping"])
        if d.get("trainer") is not None:
            cmd.trainer = _trainer(d["trainer"])
        return cmd

    # -- validation ----------------------------------------------------------------
    @property
    def image_hw(self) -> tuple[int, int]:
        """Image (height, width)."""
        s = self.image_size
        return (int(s[0]), int(s[1])) if isinstance(s, (list, tuple)) else (int(s), int(s))

    def validate(self, n_labels: int | None = None) -> "TrainingCommand":
        """Resolve every name, construct every component once and dry-run the model on one sample.

        ``n_labels`` defaults to ``len(labels)`` (or 2 when neither is known: the shapes are
        checked again with the real count before training). Returns ``self``; raises
        :class:`ConfigError` on the first problem.
        """
        if self.kind in FEWSHOT_KINDS:
            return self  # the few-shot learners validate their own commands
        import torch

        from .nets.builder import RNG_LOCK

        # Dry runs initialise layers from the global RNG: under the lock (a job may be seeding its
        # model in another thread) and on a forked RNG (validating leaves the user's stream alone).
        with RNG_LOCK, torch.random.fork_rng(devices=[]):
            self._validate(n_labels)
        return self

    def _validate(self, n_labels: int | None) -> None:
        import torch

        from . import registry

        if n_labels is None:
            n_labels = len(self.labels) if self.labels else 2
        s = self.split
        # PIL ops on a dummy image (catches bad params before any image is decoded)
        from PIL import Image

        im = Image.new("RGB" if self.channels == 3 else "L", (48, 48))
        ops = registry.pil_ops()
        for i, op in enumerate(self.pil_ops):
            path = f"pil_ops[{i}]"
            if op.name not in ops:
                raise unknown_name(f"{path}.name", op.name, list(ops), "PIL operation")
            check_params(ops[op.name], op.params, path, op.name)
            try:
                im = ops[op.name](im, **op.params)
            except Exception as exc:
                raise ConfigError(f"{path}.params", f"{op.name} rejected {op.params}: {_why(exc)}", op.params) from None
        # transforms on a dummy uint8 image of the command's size
        h, w = self.image_hw
        in_shape = (self.channels, h, w)
        for key in ("transforms", "eval_transforms"):
            x: Any = torch.zeros(self.channels, h, w, dtype=torch.uint8)
            for i, t in enumerate(getattr(self, key)):
                obj = build_component(t, registry.transforms(), f"{key}[{i}]", "transform")
                try:
                    x = obj(x)
                except Exception as exc:
                    hint = ""
                    if "float" in str(exc) and getattr(x, "dtype", None) == torch.uint8:
                        hint = ("; images are uint8 here: put {'name': 'ToDtype', 'params': {'dtype': 'float32'}}"
                                " before it")
                    raise ConfigError(f"{key}[{i}]", f"{t.name} failed on an image of shape {tuple(x.shape)}"
                                      f" ({x.dtype}): {_why(exc)}{hint}", t.to_dict()) from None
            if key == "transforms" and isinstance(x, torch.Tensor) and x.ndim == 3:
                in_shape = tuple(x.shape)
        # model: build and dry-run (builder raises ConfigError with the layer index and shapes)
        from .nets.builder import build_model

        model = build_model(self.model, n_labels=n_labels, in_shape=in_shape, path="model")
        crit = build_component(self.criterion, registry.losses(), "criterion", "loss")
        model.eval()
        with torch.no_grad():
            out = model(torch.zeros(2, *in_shape))
            try:  # the loss sees what training will give it: logits and class-index targets
                with warnings.catch_warnings():
                    warnings.simplefilter("error", UserWarning)  # silent broadcasting is a wrong loss
                    crit(out, torch.zeros(2, dtype=torch.long))
            except Exception as exc:
                raise ConfigError("criterion", f"{self.criterion.name} cannot compare model outputs of shape"
                                  f" {tuple(out.shape)} with class-index targets of shape (2,): {_why(exc)}",
                                  self.criterion.to_dict()) from None
        params = [torch.nn.Parameter(torch.zeros(2))]
        opt = build_component(self.optimizer, registry.optimizers(), "optimizer", "optimizer", params)
        if self.scheduler is not None:
            build_component(self.scheduler, registry.schedulers(), "scheduler", "scheduler", opt)
        if self.early_stopping is not None and self.early_stopping.monitor not in MONITORS:
            m = self.early_stopping.monitor
            raise unknown_name("early_stopping.monitor", m, list(MONITORS), "metric")
        if abs(s.train + s.val + s.test - 1.0) > 1e-6:
            raise ConfigError("split", f"fractions must add up to 1, got {s.train + s.val + s.test:g}", s.to_dict())
        del model

    def problems(self, n_labels: int | None = None) -> list[str]:
        """Validation messages (empty when the command is valid); for editors that show, not raise."""
        try:
            self.validate(n_labels)
        except ConfigError as exc:
            return [str(exc)]
        return []


#: Metrics a command may monitor (early stopping, ReduceLROnPlateau).
MONITORS = ("val_loss", "val_accuracy", "train_loss")


def check_params(cls: Any, params: Mapping[str, Any], path: str, name: str, skip: int = 0) -> None:
    """Unknown or missing constructor parameters → ConfigError naming the parameter."""
    from .registry import signature_params

    names, required, var_kw = signature_params(cls)
    names, required = names[skip:], [r for r in required if r in names[skip:]]
    if not var_kw:
        for k in params:
            if k not in names:
                raise ConfigError(f"{path}.params.{k}", f"{name} has no parameter {k!r}", k, names,
                                  close_matches(k, names))
    missing = [r for r in required if r not in params]
    if missing:
        raise ConfigError(f"{path}.params", f"{name} needs parameter {missing[0]!r}", dict(params), names)


def build_component(c: Component, table: Mapping[str, Any], path: str, what: str, *args: Any) -> Any:
    """Look ``c.name`` up in ``table``, check its params and construct it (errors name the path)."""
    from .registry import coerce_params

    if c.name not in table:
        raise unknown_name(f"{path}.name", c.name, list(table), what)
    cls = table[c.name]
    check_params(cls, c.params, path, c.name, skip=len(args))
    try:
        kwargs = coerce_params(cls, c.params)
        return cls(*args, **kwargs)
    except Exception as exc:
        raise ConfigError(f"{path}.params", f"{c.name} rejected {json.dumps(c.params, default=str)}: {_why(exc)}",
                          c.params) from None


# -- helpers -------------------------------------------------------------------------------

def _why(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return msg[0] if msg else type(exc).__name__


def _show(v: Any) -> str:
    r = repr(v)
    return (r[:60] + "…") if len(r) > 60 else r + f" ({type(v).__name__})"


def _check_keys(d: Mapping[str, Any], known: Iterable[str], path: str) -> None:
    known = list(known)
    for k in d:
        if k not in known:
            p = f"{path}.{k}" if path else str(k)
            raise ConfigError(p, f"unknown field {k!r}", d[k], known, close_matches(str(k), known))


def _typed(v: Any, typ: Any, path: str, expected: str) -> Any:
    if isinstance(v, bool) and typ is not bool:
        raise ConfigError(path, f"expected {expected}, got {_show(v)}", v)
    if not isinstance(v, typ):
        raise ConfigError(path, f"expected {expected}, got {_show(v)}", v)
    return v


def _positive_int(v: Any, path: str) -> int:
    v = _typed(v, int, path, "a positive integer")
    if v < 1:
        raise ConfigError(path, f"expected a positive integer, got {v}", v)
    return v


def _image_size(v: Any) -> int | list[int]:
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) and x > 0
                                                   for x in v):
        return list(v)
    if isinstance(v, int) and not isinstance(v, bool) and v > 0:
        return v
    raise ConfigError("image_size", f"expected a positive integer or [height, width], got {_show(v)}", v)


def _split(v: Any) -> Split:
    if not isinstance(v, Mapping):
        raise ConfigError("split", f"expected an object with train/val/test fractions, got {_show(v)}", v)
    _check_keys(v, ("train", "val", "test"), "split")
    s = Split()
    for k in ("train", "val", "test"):
        if k in v:
            x = v[k]
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 <= x <= 1:
                raise ConfigError(f"split.{k}", f"expected a fraction between 0 and 1, got {_show(x)}", x)
            setattr(s, k, float(x))
    if s.train <= 0:
        raise ConfigError("split.train", "the training fraction must be above 0", s.train)
    if abs(s.train + s.val + s.test - 1.0) > 1e-6:
        raise ConfigError("split", f"fractions must add up to 1, got {s.train + s.val + s.test:g}", s.to_dict())
    return s


def _early_stopping(v: Any) -> EarlyStopping:
    if v is True:
        return EarlyStopping()
    if not isinstance(v, Mapping):
        raise ConfigError("early_stopping", f"expected an object or true, got {_show(v)}", v)
    _check_keys(v, ("monitor", "patience", "mode", "min_delta"), "early_stopping")
    e = EarlyStopping()
    if "monitor" in v:
        e.monitor = _typed(v["monitor"], str, "early_stopping.monitor", "a metric name")
        if e.monitor not in MONITORS:
            raise unknown_name("early_stopping.monitor", e.monitor, list(MONITORS), "metric")
        e.mode = "max" if e.monitor.endswith("accuracy") else "min"
    if "patience" in v:
        e.patience = _positive_int(v["patience"], "early_stopping.patience")
    if "mode" in v:
        e.mode = v["mode"]
        if e.mode not in ("min", "max"):
            raise ConfigError("early_stopping.mode", f"unknown mode {e.mode!r}", e.mode, ["min", "max"])
    if "min_delta" in v:
        e.min_delta = float(_typed(v["min_delta"], (int, float), "early_stopping.min_delta", "a number"))
    return e


def _trainer(v: Any) -> TrainerOptions:
    if not isinstance(v, Mapping):
        raise ConfigError("trainer", f"expected an object of Trainer options, got {_show(v)}", v)
    t = TrainerOptions()
    known = [f.name for f in fields(TrainerOptions)]
    _check_keys(v, known, "trainer")
    if "accelerator" in v:
        t.accelerator = _typed(v["accelerator"], str, "trainer.accelerator", "a string")
        allowed = ["auto", "cpu", "gpu", "cuda", "mps", "tpu"]
        if t.accelerator not in allowed:
            raise ConfigError("trainer.accelerator", f"unknown accelerator {t.accelerator!r}", t.accelerator,
                              allowed, close_matches(t.accelerator, allowed))
    if "devices" in v:
        dv = v["devices"]
        ok = (dv == "auto" or (isinstance(dv, int) and not isinstance(dv, bool) and (dv >= 1 or dv == -1))
              or (isinstance(dv, list) and dv and all(isinstance(x, int) for x in dv)))
        if not ok:
            raise ConfigError("trainer.devices", f"expected 'auto', a count ≥ 1, -1 or a list of device indices,"
                              f" got {_show(dv)}", dv)
        t.devices = dv
    if "strategy" in v:
        t.strategy = _typed(v["strategy"], str, "trainer.strategy", "a strategy name")
        allowed = ["auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "fsdp", "deepspeed",
                   "ddp_find_unused_parameters_true", "single_device", "dp"]
        if t.strategy not in allowed:
            raise ConfigError("trainer.strategy", f"unknown strategy {t.strategy!r}", t.strategy, allowed,
                              close_matches(t.strategy, allowed))
    if "num_nodes" in v:
        t.num_nodes = _positive_int(v["num_nodes"], "trainer.num_nodes")
    if "precision" in v:
        p = str(v["precision"])
        if p not in PRECISIONS:
            raise ConfigError("trainer.precision", f"unknown precision {v['precision']!r}", v["precision"],
                              PRECISIONS, close_matches(p, list(PRECISIONS)))
        t.precision = p
    if "log_every_n_steps" in v:
        t.log_every_n_steps = _positive_int(v["log_every_n_steps"], "trainer.log_every_n_steps")
    for k in ("gradient_clip_val", "limit_train_batches", "limit_val_batches"):
        if v.get(k) is not None:
            x = v[k]
            if isinstance(x, bool) or not isinstance(x, (int, float)) or x <= 0:
                raise ConfigError(f"trainer.{k}", f"expected a positive number, got {_show(x)}", x)
            setattr(t, k, x)
    if v.get("deterministic") is not None:
        t.deterministic = _typed(v["deterministic"], bool, "trainer.deterministic", "true or false")
    return t
