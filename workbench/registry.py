"""Name → object tables for training commands, and the one error type of the command language.

Never ``eval``: every name a command may use is looked up here, and anything not in a table is
rejected with close matches. Tables are built once from the libraries themselves (``torch.nn``,
``torch.optim``, ``torch.optim.lr_scheduler``, ``torchvision.transforms.v2``) minus entries that
need Python callables or nested objects a JSON command cannot express, plus an explicit
allow-list of PIL image operations.

:class:`ConfigError` names the field path, the value, the allowed choices and close matches, and
carries *every* problem of a command (``.problems``); :func:`from_validation_error` turns a
pydantic ``ValidationError`` into one. :class:`Component` (a registry name plus constructor
parameters) and :func:`build_component` are the pieces every command family is made of.
"""
from __future__ import annotations

import copy
import difflib
import inspect
import json
from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping

import torch
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from torch import nn

from .pilops import PIL_OPS_DOC, pil_ops  # noqa: F401  (the PIL table is one of the registry's tables)

_MAX_ALLOWED_SHOWN = 12


class ConfigError(ValueError):
    """A command problem: which field (``path``), what was given (``value``) and what is allowed.

    ``problems`` lists every problem found in the command (this one first); ``str(err)`` shows
    the first on the first line and the others below it.
    """

    def __init__(self, path: str, message: str, value: Any = None, allowed: Iterable[Any] | None = None,
                 suggestions: Iterable[str] = ()) -> None:
        self.path = path
        self.value = value
        self.allowed = list(allowed) if allowed is not None else None
        self.suggestions = list(suggestions)
        self.reason = message  # the message without path and choices (to re-home the problem)
        text = f"{path}: {message}" if path else message
        if self.suggestions:
            text += f"; did you mean {' or '.join(repr(s) for s in self.suggestions)}?"
        if self.allowed:
            shown = ", ".join(str(a) for a in self.allowed[:_MAX_ALLOWED_SHOWN])
            more = len(self.allowed) - _MAX_ALLOWED_SHOWN
            text += f" (allowed: {shown}{f', … {more} more' if more > 0 else ''})"
        self.message = text
        self.problems: list[ConfigError] = [self]
        super().__init__(text)

    def at(self, path: str) -> "ConfigError":
        """The same (single) problem under another field path."""
        return ConfigError(path, self.reason, self.value, self.allowed, self.suggestions)

    @classmethod
    def collect(cls, problems: list["ConfigError"]) -> "ConfigError":
        """One error carrying several problems (the first is the error's own path and message)."""
        flat = [p for e in problems for p in e.problems]
        err = flat[0].at(flat[0].path)
        err.problems = flat
        if len(flat) > 1:
            more = "\n".join(f"  also {p.message}" for p in flat[1:])
            err.message = f"{flat[0].message}\n{more}"
            err.args = (err.message,)
        return err


def join_path(prefix: str, path: Any) -> str:
    """``model`` + ``layers[1]`` → ``model.layers[1]``; ``model`` + ``[1]`` → ``model[1]``."""
    path = str(path)
    if not prefix:
        return path
    if not path:
        return prefix
    return prefix + path if path.startswith("[") else f"{prefix}.{path}"


def loc_path(loc: Iterable[Any]) -> str:
    """A pydantic location ``("model", "layers", 4, "name")`` as ``model.layers[4].name``."""
    out = ""
    for part in loc:
        out = join_path(out, f"[{part}]" if isinstance(part, int) else str(part))
    return out


def close_matches(name: str, choices: list[str] | tuple[str, ...], n: int = 3) -> list[str]:
    """Close matches for a misspelt name, case-insensitively (``relu`` → ``ReLU``)."""
    lower = {str(c).lower(): c for c in choices}
    hits = difflib.get_close_matches(str(name).lower(), list(lower), n=n, cutoff=0.6)
    return [lower[h] for h in hits]


def unknown_name(path: str, value: Any, allowed: list[str], what: str) -> ConfigError:
    """The error for a name not in a table, with close matches."""
    return ConfigError(path, f"unknown {what} {value!r}", value, sorted(allowed), close_matches(str(value), allowed))


def show(v: Any) -> str:
    """A short repr of a user value with its type: ``'5' (str)``."""
    r = repr(v)
    return (r[:60] + "…") if len(r) > 60 else r + f" ({type(v).__name__})"


def why(exc: BaseException) -> str:
    """The first line of an exception's message (or its type)."""
    msg = str(exc).strip().splitlines()
    return msg[0] if msg else type(exc).__name__


# -- pydantic ValidationError → ConfigError ---------------------------------------------------

#: What a pydantic type error means in our words (the value is appended).
_EXPECTED = {"string_type": "a string", "int_type": "an integer", "float_type": "a number", "bool_type":
             "true or false", "list_type": "a list", "dict_type": "an object", "model_type": "an object",
             "literal_error": "one of the allowed values", "missing": None}


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model class that holds the field at ``loc`` (for the names an unknown field could mean)."""
    cls: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return None
        cls = _inner_model(field.annotation)
        if cls is None:
            return None
    return cls


def _inner_model(tp: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in getattr(tp, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def from_validation_error(exc: ValidationError, model: type[BaseModel], prefix: str = "") -> ConfigError:
    """Every problem of a pydantic ``ValidationError`` as one :class:`ConfigError`.

    A validator that raised a ``ConfigError`` keeps its message; its (relative) path is put
    under the location where it was raised. Unknown fields list the known ones and close matches.
    """
    problems = []
    for e in exc.errors(include_url=False):
        loc = tuple(e["loc"])
        path = join_path(prefix, loc_path(loc))
        inner = (e.get("ctx") or {}).get("error")
        if isinstance(inner, ConfigError):
            problems.extend(p.at(join_path(path, p.path)) for p in inner.problems)
        elif e["type"] == "extra_forbidden":
            holder = _model_at(model, loc[:-1])
            known = list(holder.model_fields) if holder is not None else []
            key = str(loc[-1])
            problems.append(ConfigError(path, f"unknown field {key!r}", e.get("input"), known,
                                        close_matches(key, known)))
        elif e["type"] == "missing":
            problems.append(ConfigError(path, "missing (required)", None))
        else:
            what = _EXPECTED.get(e["type"])
            text = f"expected {what}, got {show(e.get('input'))}" if what else e["msg"]
            problems.append(ConfigError(path, text, e.get("input")))
    return ConfigError.collect(problems)


class Strict(BaseModel):
    """Base of every command section: JSON types only (no ``"5"`` → 5), unknown keys rejected."""

    model_config = ConfigDict(strict=True, extra="forbid")

    def __getitem__(self, key: str) -> Any:  # sections read like the dicts they were written as
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (nested sections as dicts)."""
        return json.loads(self.model_dump_json())


class Component(Strict):
    """A registry name plus constructor keyword arguments (a layer, loss, optimizer, transform …).

    Accepts ``"ReLU"``, ``{"name": .., "params": {..}}`` or the flat ``{"name": .., "lr": ..}``.
    """

    name: str
    params: dict[str, Any] = {}

    def __init__(self, name: Any = None, params: Mapping[str, Any] | None = None, /, **data: Any) -> None:
        if name is not None:
            data = {"name": name, "params": dict(params or {})}
        super().__init__(**data)

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, d: Any) -> Any:
        if isinstance(d, Component):
            return d
        if isinstance(d, str):
            return {"name": d, "params": {}}
        if not isinstance(d, Mapping):
            raise ConfigError("", f"expected a name or an object with 'name' and 'params', got {show(d)}", d)
        if "name" not in d:
            raise ConfigError("", "missing 'name'", dict(d))
        if not isinstance(d["name"], str):
            raise ConfigError("name", f"expected a string, got {show(d['name'])}", d["name"])
        if "params" not in d:
            return {"name": d["name"], "params": copy.deepcopy({k: v for k, v in d.items() if k != "name"})}
        extra = sorted(set(d) - {"name", "params"})
        if extra:
            raise ConfigError(extra[0], "unexpected key next to 'params' (put it inside 'params')", d[extra[0]],
                              ["name", "params"])
        params = d["params"] if d["params"] is not None else {}
        if not isinstance(params, Mapping):
            raise ConfigError("params", f"expected an object, got {show(params)}", params)
        return {"name": d["name"], "params": copy.deepcopy(dict(params))}


#: nn.Module classes that are containers or need other modules/callables as arguments.
_LAYER_EXCLUDE = {"Module", "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict",
                  "Container", "Transformer", "TransformerEncoder", "TransformerDecoder",
                  "AdaptiveLogSoftmaxWithLoss", "LazyLinear", "LazyConv1d", "LazyConv2d", "LazyConv3d",
                  "LazyConvTranspose1d", "LazyConvTranspose2d", "LazyConvTranspose3d",
                  "LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d", "LazyInstanceNorm1d",
                  "LazyInstanceNorm2d", "LazyInstanceNorm3d"}
#: Optimizers that need a closure (LBFGS), sparse gradients (SparseAdam) or 2-D-only params (Muon).
_OPTIM_EXCLUDE = {"Optimizer", "LBFGS", "SparseAdam", "Muon"}
#: Schedulers taking lambdas or other schedulers.
_SCHED_EXCLUDE = {"LRScheduler", "_LRScheduler", "LambdaLR", "MultiplicativeLR", "ChainedScheduler",
                  "SequentialLR"}
#: v2 transforms taking callables/transform lists, or meant for boxes, videos and batches.
_TRANSFORM_EXCLUDE = {"Transform", "Lambda", "Compose", "RandomApply", "RandomChoice", "RandomOrder",
                      "ClampBoundingBoxes", "ClampKeyPoints", "ConvertBoundingBoxFormat", "SanitizeBoundingBoxes",
                      "SanitizeKeyPoints", "SetClampingMode", "RandomIoUCrop", "UniformTemporalSubsample",
                      "CutMix", "MixUp", "FiveCrop", "TenCrop", "LinearTransformation", "ToPILImage",
                      "PILToTensor", "ToTensor", "ToImage", "ToPureTensor"}

_DTYPES = {"float32": torch.float32, "float": torch.float32, "float16": torch.float16,
           "bfloat16": torch.bfloat16, "float64": torch.float64, "uint8": torch.uint8}




def _classes(module: Any, base: type, exclude: set[str]) -> dict[str, type]:
    out = {}
    for n in dir(module):
        obj = getattr(module, n)
        if n.startswith("_") or n in exclude or not inspect.isclass(obj):
            continue
        if issubclass(obj, base):
            out[n] = obj
    return out


@lru_cache(maxsize=None)
def layers() -> dict[str, type[nn.Module]]:
    """Layer classes from ``torch.nn`` (losses and containers left out)."""
    return {k: v for k, v in _classes(nn, nn.Module, _LAYER_EXCLUDE).items() if not k.endswith("Loss")
            and k != "NLLLoss2d"}


@lru_cache(maxsize=None)
def losses() -> dict[str, type[nn.Module]]:
    """Loss classes from ``torch.nn`` (``CrossEntropyLoss``, ``NLLLoss`` …)."""
    return {k: v for k, v in _classes(nn, nn.Module, _LAYER_EXCLUDE).items() if k.endswith("Loss")
            and k != "NLLLoss2d"}


@lru_cache(maxsize=None)
def optimizers() -> dict[str, type[torch.optim.Optimizer]]:
    """Optimizer classes from ``torch.optim``."""
    return _classes(torch.optim, torch.optim.Optimizer, _OPTIM_EXCLUDE)


@lru_cache(maxsize=None)
def schedulers() -> dict[str, type]:
    """LR scheduler classes from ``torch.optim.lr_scheduler`` (``ReduceLROnPlateau`` included)."""
    from torch.optim import lr_scheduler as S

    out = _classes(S, S.LRScheduler, _SCHED_EXCLUDE)
    out["ReduceLROnPlateau"] = S.ReduceLROnPlateau
    return out


@lru_cache(maxsize=None)
def transforms() -> dict[str, type]:
    """Image transforms from ``torchvision.transforms.v2`` applied to uint8 CHW tensors."""
    from torchvision.transforms import v2

    return _classes(v2, v2.Transform, _TRANSFORM_EXCLUDE)


TABLES: dict[str, Callable[[], dict[str, Any]]] = {
    "layer": layers, "loss": losses, "optimizer": optimizers, "scheduler": schedulers,
    "transform": transforms, "pil_op": pil_ops,
}


def coerce_params(cls: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Turn JSON values into what constructors expect (lists → tuples, dtype names → dtypes)."""
    out = {}
    for k, v in params.items():
        if k == "dtype" and isinstance(v, str):
            if v not in _DTYPES:
                raise ValueError(f"dtype {v!r} is not one of {', '.join(_DTYPES)}")
            v = _DTYPES[v]
        elif isinstance(v, list) and k not in ("mean", "std", "milestones", "normalized_shape", "fill",
                                                  "box", "size"):
            v = tuple(v)
        out[k] = v
    if getattr(cls, "__name__", "") == "ToDtype" and "scale" not in out:
        out["scale"] = True  # uint8 → float in [0, 1], what users mean by "to float"
    return out


def _constructor(cls: Any) -> Any:
    """The callable whose signature names a class's parameters.

    ``nn.RNN``/``LSTM``/``GRU`` take ``(*args, **kwargs)`` and hand them to ``RNNBase`` (whose
    ``mode`` they fill in); ``Identity`` and the parameterless activations take ``(*args,
    **kwargs)`` and accept nothing (``Identity`` would silently swallow any junk parameter).
    """
    if not inspect.isclass(cls):
        return cls
    init = cls.__init__
    try:
        kinds = {p.kind for p in list(inspect.signature(init).parameters.values())[1:]}
    except (TypeError, ValueError):
        return init
    if kinds and kinds <= {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}:
        if issubclass(cls, nn.RNNBase):
            def rnn(self: Any, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                    batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                    proj_size: int = 0) -> None: ...
            return rnn

        def nothing(self: Any) -> None: ...
        return nothing
    return init


def signature_params(cls: Any) -> tuple[list[str], list[str], bool]:
    """(all parameter names, required names, accepts **kwargs) of a class or function."""
    target = _constructor(cls)
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return [], [], True
    names, required, var_kw = [], [], False
    params = list(sig.parameters.values())
    for i, p in enumerate(params):
        if (inspect.isclass(cls) and i == 0 and p.name == "self") or p.kind == p.VAR_POSITIONAL:
            continue
        if not inspect.isclass(cls) and i == 0:
            continue  # PIL ops: the image
        if p.kind == p.VAR_KEYWORD:
            var_kw = True
            continue
        names.append(p.name)
        if p.default is p.empty:
            required.append(p.name)
    return names, required, var_kw


def check_params(cls: Any, params: Mapping[str, Any], path: str, name: str, skip: int = 0) -> None:
    """Unknown or missing constructor parameters → ConfigError naming the parameter."""
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
    if c.name not in table:
        raise unknown_name(f"{path}.name", c.name, list(table), what)
    cls = table[c.name]
    check_params(cls, c.params, path, c.name, skip=len(args))
    try:
        kwargs = coerce_params(cls, c.params)
        return cls(*args, **kwargs)
    except Exception as exc:
        raise ConfigError(f"{path}.params", f"{c.name} rejected {json.dumps(c.params, default=str)}: {why(exc)}",
                          c.params) from None
