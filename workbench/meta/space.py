"""Search spaces over training commands, declared with dotted keys, suggested by Optuna.

    space = SearchSpace.from_dict({
        "optimizer.name": ["Adam", "SGD"],
        "optimizer.params.lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
        "optimizer.params.momentum": {"type": "float", "low": 0.5, "high": 0.99, "when": {"optimizer.name": "SGD"}},
        "batch_size": [16, 32, 64],
        "transforms": {"type": "categorical", "choices": {"none": [], "flip": [FLIP]}},
    })
    params = space.suggest(trial)          # {"optimizer.name": "SGD", ...} (only active keys)
    command = space.apply(base, params)    # the training command with those values set

- A **list** is a categorical axis. Choices that are not plain scalars (a list of
  transforms, a model spec) get labels: give them as ``{"label": value}`` or let the space
  label them (``"c0"``, ``"c1"``, …). Optuna stores the label; :meth:`apply` sets the value.
- ``{"type": "float"|"int", "low", "high", "log", "step"}`` are Optuna's ranges.
- ``"when": {key: value | [values]}`` makes a key conditional (``momentum`` only for SGD);
  an inactive key is not suggested at all, so the sampler never learns from a value that
  had no effect.

Bad spaces are :class:`SpaceError` (a ``ValueError``) naming the key, the value and what
is allowed, raised by :meth:`SearchSpace.from_dict` before any trial runs.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .common import stable_hash, unflatten_set

__all__ = ["SpaceError", "Param", "SearchSpace", "default_space", "metadataset_space", "FLIP", "TRANSLATE",
           "load_space", "grid_size"]

TYPES = ("categorical", "float", "int")

FLIP = {"name": "RandomHorizontalFlip", "params": {"p": 0.5}}
TRANSLATE = {"name": "RandomAffine", "params": {"degrees": 0, "translate": [0.15, 0.15]}}


class SpaceError(ValueError):
    """A search-space problem: which key, what was given and what is allowed."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"space[{key!r}]: {message}" if key else f"space: {message}")


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


@dataclass
class Param:
    """One axis of a search space."""

    key: str
    type: str
    choices: dict[str, Any] | None = None  # label → value (categorical)
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    when: dict[str, list[Any]] = field(default_factory=dict)

    def distribution(self):
        """The Optuna distribution of this axis (labels for categorical choices)."""
        import optuna.distributions as d

        if self.type == "categorical":
            return d.CategoricalDistribution(list(self.choices))
        if self.type == "int":
            return d.IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return d.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def suggest(self, trial: Any) -> Any:
        """Ask ``trial`` for a value (the label for categorical axes)."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)

    def value(self, label_or_value: Any) -> Any:
        """The command value of a suggested label (scalars are their own value)."""
        if self.type == "categorical":
            return copy.deepcopy(self.choices[label_or_value])
        return label_or_value

    def label(self, value: Any) -> Any:
        """The label of a command value (``KeyError`` when it is not a choice)."""
        if self.type != "categorical":
            return value
        for lab, v in self.choices.items():
            if json.dumps(v, sort_keys=True) == json.dumps(value, sort_keys=True):
                return lab
        raise KeyError(f"{self.key}: value {value!r} is not one of the choices")

    def active(self, params: Mapping[str, Any]) -> bool:
        """True when every condition of this key holds for the values suggested so far."""
        return all(k in params and params[k] in vals for k, vals in self.when.items())

    def to_dict(self) -> dict[str, Any]:
        """The JSON form :meth:`SearchSpace.from_dict` reads."""
        d: dict[str, Any] = {"type": self.type}
        if self.type == "categorical":
            self_labelled = all(_is_scalar(v) and k == v and type(k) is type(v) for k, v in self.choices.items())
            d["choices"] = list(self.choices) if self_labelled else copy.deepcopy(self.choices)
        else:
            d.update({"low": self.low, "high": self.high, "log": self.log})
            if self.step is not None:
                d["step"] = self.step
        if self.when:
            d["when"] = copy.deepcopy(self.when)
        return d


def _parse_param(key: str, spec: Any) -> Param:
    if not isinstance(key, str) or not key or key.startswith(".") or key.endswith(".") or ".." in key:
        raise SpaceError(str(key), "keys are dotted command paths such as 'optimizer.params.lr'")
    if isinstance(spec, (list, tuple)):
        spec = {"type": "categorical", "choices": list(spec)}
    if not isinstance(spec, Mapping):
        raise SpaceError(key, f"got {spec!r}; expected a list of choices or an object with 'type' "
                              f"({', '.join(TYPES)})")
    extra = sorted(set(spec) - {"type", "choices", "low", "high", "log", "step", "when"})
    if extra:
        raise SpaceError(key, f"unknown field {extra[0]!r} (allowed: type, choices, low, high, log, step, when)")
    typ = spec.get("type", "categorical" if "choices" in spec else "float")
    if typ not in TYPES:
        raise SpaceError(key, f"type {typ!r} is not one of {', '.join(TYPES)}")
    when = {}
    for ck, cv in (spec.get("when") or {}).items():
        when[str(ck)] = list(cv) if isinstance(cv, (list, tuple)) else [cv]
    if typ == "categorical":
        ch = spec.get("choices")
        if isinstance(ch, Mapping):
            choices = {str(k): v for k, v in ch.items()}
        elif isinstance(ch, (list, tuple)):
            if all(_is_scalar(v) for v in ch):
                if len({json.dumps(v) for v in ch}) != len(ch):
                    raise SpaceError(key, f"choices {list(ch)!r} repeat a value")
                choices = {v: v for v in ch}  # scalars label themselves (Optuna stores them as given)
            else:
                choices = {f"c{i}": v for i, v in enumerate(ch)}
        else:
            raise SpaceError(key, f"choices = {ch!r}: expected a non-empty list or an object of label → value")
        if not choices:
            raise SpaceError(key, "choices is empty; give at least one value")
        return Param(key, typ, choices=choices, when=when)
    lo, hi = spec.get("low"), spec.get("high")
    for name, v in (("low", lo), ("high", hi)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise SpaceError(key, f"{name} = {v!r}: expected a finite number")
    if typ == "int" and (int(lo) != lo or int(hi) != hi):
        raise SpaceError(key, f"an int range needs whole low/high, got {lo!r}..{hi!r}")
    if not lo < hi:
        raise SpaceError(key, f"low {lo!r} must be below high {hi!r}")
    log = bool(spec.get("log", False))
    if log and lo <= 0:
        raise SpaceError(key, f"a log range needs low > 0, got {lo!r}")
    step = spec.get("step")
    if step is not None and (not isinstance(step, (int, float)) or step <= 0 or log):
        raise SpaceError(key, f"step = {step!r}: expected a positive number, and no step on a log range")
    return Param(key, typ, low=float(lo) if typ == "float" else int(lo), high=float(hi) if typ == "float" else int(hi),
                 log=log, step=step, when=when)


class SearchSpace:
    """An ordered set of :class:`Param` axes (conditions may refer only to earlier keys)."""

    def __init__(self, params: list[Param]) -> None:
        self.params = {p.key: p for p in params}
        seen: set[str] = set()
        for p in params:
            for ck, vals in p.when.items():
                if ck not in seen:
                    raise SpaceError(p.key, f"condition on {ck!r}, which is not an earlier key of the space")
                dep = self.params[ck]
                if dep.type == "categorical":
                    bad = [v for v in vals if v not in dep.choices]
                    if bad:
                        raise SpaceError(p.key, f"condition {ck}={bad[0]!r} is not a choice of {ck!r} "
                                                f"(choices: {', '.join(map(str, dep.choices))})")
            seen.add(p.key)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | "SearchSpace") -> "SearchSpace":
        """Parse and check a space (see the module docstring)."""
        if isinstance(d, SearchSpace):
            return d
        if not isinstance(d, Mapping) or not d:
            raise SpaceError("", f"expected a non-empty object of dotted key → range, got {d!r}")
        return cls([_parse_param(k, v) for k, v in d.items()])

    def to_dict(self) -> dict[str, Any]:
        """JSON form (round-trips through :meth:`from_dict`)."""
        return {k: p.to_dict() for k, p in self.params.items()}

    def __len__(self) -> int:
        return len(self.params)

    def __iter__(self):
        return iter(self.params.values())

    def check_base(self, base: Mapping[str, Any]) -> None:
        """Every key must name a field of the command (its top-level part at least)."""
        from ..registry import close_matches

        for k in self.params:
            top = k.split(".")[0]
            if top not in base:
                near = close_matches(top, list(base))
                raise SpaceError(k, f"{top!r} is not a field of the training command"
                                    + (f"; did you mean {near[0]!r}?" if near else "")
                                    + f" (fields: {', '.join(sorted(base))})")

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Ask an Optuna trial for every active key; returns key → label/value."""
        out: dict[str, Any] = {}
        for p in self.params.values():
            if p.active(out):
                out[p.key] = p.suggest(trial)
        return out

    def distributions(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Optuna distributions of the keys in ``params`` (for ``create_trial``)."""
        return {k: self.params[k].distribution() for k in params if k in self.params}

    def apply(self, base: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``base`` with each suggested label/value set at its dotted key."""
        cmd = copy.deepcopy(dict(base))
        for k, v in params.items():
            p = self.params.get(k)
            unflatten_set(cmd, k, p.value(v) if p is not None else copy.deepcopy(v))
        return cmd

    def params_of(self, command: Mapping[str, Any]) -> dict[str, Any] | None:
        """The labels/values a command takes on this space's active keys; ``None`` if off the space."""
        from .common import flatten

        flat = flatten(command)
        out: dict[str, Any] = {}
        for p in self.params.values():
            if not p.active(out):
                continue
            v = _lookup(command, p.key, flat)
            try:
                lab = p.label(v)
            except KeyError:
                return None
            if p.type != "categorical" and (v is None or not p.low <= v <= p.high):
                return None
            out[p.key] = lab
        return out

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of a categorical space, in a fixed order (conditional keys expanded)."""
        if any(p.type != "categorical" for p in self.params.values()):
            raise SpaceError(next(p.key for p in self.params.values() if p.type != "categorical"),
                             "a grid needs categorical axes only (a list of values)")
        points: list[dict[str, Any]] = [{}]
        for p in self.params.values():
            nxt = []
            for pt in points:
                if p.active(pt):
                    nxt.extend({**pt, p.key: lab} for lab in p.choices)
                else:
                    nxt.append(pt)
            points = nxt
        return points

    def grid_search_space(self) -> dict[str, list[Any]]:
        """Optuna ``GridSampler``'s form: key → labels (unconditional spaces only)."""
        if any(p.when for p in self.params.values()):
            raise SpaceError(next(p.key for p in self.params.values() if p.when),
                             "GridSampler cannot take conditional keys; drop 'when' or use strategy='random'")
        self.grid()  # raises on a non-categorical axis
        return {k: list(p.choices) for k, p in self.params.items()}

    def key_of(self, params: Mapping[str, Any]) -> str:
        """Identity of a point of the space (labels, canonical JSON)."""
        return stable_hash({k: params[k] for k in sorted(params)})

    def __repr__(self) -> str:
        return f"SearchSpace({', '.join(self.params)})"


def _lookup(d: Mapping[str, Any], dotted: str, flat: Mapping[str, Any]) -> Any:
    if dotted in flat:
        return flat[dotted]
    cur: Any = d
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def load_space(src: str | Path | Mapping[str, Any] | SearchSpace | None) -> SearchSpace:
    """A space from a JSON file, a dict, a :class:`SearchSpace`, or ``None`` for :func:`default_space`."""
    if src is None:
        return default_space()
    if isinstance(src, (SearchSpace, Mapping)):
        return SearchSpace.from_dict(src)
    p = Path(src).expanduser()
    if not p.is_file():
        raise SpaceError("", f"no space file {str(p)!r}")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SpaceError("", f"{p}: not valid JSON: {exc.msg} at line {exc.lineno}") from None
    return SearchSpace.from_dict(d)


def default_space() -> SearchSpace:
    """The shipped space for small image classifiers (the CLI's and ``tune()``'s default)."""
    return SearchSpace.from_dict({
        "optimizer.name": ["Adam", "AdamW", "SGD"],
        "optimizer.params.lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
        "optimizer.params.momentum": {"type": "float", "low": 0.5, "high": 0.99, "when": {"optimizer.name": "SGD"}},
        "optimizer.params.weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True,
                                          "when": {"optimizer.name": ["AdamW", "SGD"]}},
        "batch_size": [16, 32, 64],
        "model.params.hidden": [8, 16, 32, 64],
        "transforms": {"type": "categorical", "choices": {"none": [], "flip": [FLIP], "translate": [TRANSLATE],
                                                          "flip+translate": [FLIP, TRANSLATE]}},
    })


def metadataset_space() -> SearchSpace:
    """The grid the shipped meta-dataset was trained on (48 points; the replay's space)."""
    return SearchSpace.from_dict({
        "optimizer.params.lr": [3e-4, 1e-3, 3e-3, 1e-2],
        "model.params.hidden": [8, 32],
        "transforms": {"type": "categorical", "choices": {"none": [], "flip": [FLIP], "translate": [TRANSLATE]}},
        "batch_size": [16, 64],
    })


def grid_size(space: SearchSpace) -> int:
    """Points in a categorical space."""
    return len(space.grid())

