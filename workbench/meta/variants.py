"""The points of a sweep: expanding a search space into variants, and how a variant is named.

Split out of :mod:`.sweep` (which runs them) to keep both modules readable.
"""
from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .common import stable_hash

__all__ = ["Variant", "expand_space", "short", "STRATEGIES"]

STRATEGIES = ("grid", "random")


@dataclass
class Variant:
    """One point of a sweep: the parameters it sets, its full command and its hash."""

    index: int
    params: dict[str, Any]
    command: dict[str, Any]
    hash: str
    run_id: str | None = None
    status: str = "pending"
    error: str | None = None

    def label(self) -> str:
        """``lr=0.01,batch_size=32`` (last dotted part of each key)."""
        return ",".join(f"{k.split('.')[-1]}={short(v)}" for k, v in self.params.items())


def short(v: Any) -> str:
    """A parameter value as a sweep label shows it (``0.01``, ``SGD(lr=0.1)``, a hash for structures)."""
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, dict) and isinstance(v.get("name"), str):  # a component: SGD(lr=0.1,momentum=0.9)
        ps = v.get("params") if isinstance(v.get("params"), dict) else {k: x for k, x in v.items() if k != "name"}
        return f"{v['name']}(" + ",".join(f"{k}={short(x)}" for k, x in ps.items()) + ")"
    if isinstance(v, (dict, list)):
        return stable_hash(v, 6)
    return str(v)


def expand_space(space: Mapping[str, Any], strategy: str = "grid", n: int | None = None,
                 seed: int = 0) -> list[dict[str, Any]]:
    """The parameter dicts of a sweep, in a fixed order (same arguments → same variants)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy = {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if not isinstance(space, Mapping) or not space:
        raise ValueError(f"space: expected a non-empty dict of dotted key → values, got {space!r}")
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"n = {n!r}: expected a positive integer (or None for the whole grid)")
    keys = list(space)
    rng = random.Random(seed)
    if strategy == "grid":
        axes = []
        for k in keys:
            v = space[k]
            if not isinstance(v, (list, tuple)) or not v:
                raise ValueError(f"space[{k!r}] = {v!r}: a grid axis must be a non-empty list of values")
            axes.append(list(v))
        points = [dict(zip(keys, combo)) for combo in itertools.product(*axes)]
        if n is not None and n < len(points):
            keep = sorted(rng.sample(range(len(points)), n))  # a seeded subset, still in grid order
            points = [points[i] for i in keep]
        return points
    if n is None:
        raise ValueError("strategy 'random' needs n (how many variants to draw)")
    samplers: dict[str, Callable[[], Any]] = {}
    for k in keys:
        v = space[k]
        if isinstance(v, (list, tuple)) and v:
            vals = list(v)
            samplers[k] = lambda vals=vals: vals[rng.randrange(len(vals))]
        elif isinstance(v, Mapping) and "low" in v and "high" in v:
            lo, hi = float(v["low"]), float(v["high"])
            if not lo < hi:
                raise ValueError(f"space[{k!r}]: low {lo} must be below high {hi}")
            if v.get("log") and lo <= 0:
                raise ValueError(f"space[{k!r}]: a log range needs low > 0, got {lo}")
            is_int = bool(v.get("int"))

            def draw(lo=lo, hi=hi, log=bool(v.get("log")), is_int=is_int):
                x = math.exp(rng.uniform(math.log(lo), math.log(hi))) if log else rng.uniform(lo, hi)
                return int(round(x)) if is_int else float(f"{x:.4g}")
            samplers[k] = draw
        else:
            raise ValueError(f"space[{k!r}] = {v!r}: expected a list of choices or "
                             "{'low': a, 'high': b, 'log': bool, 'int': bool}")
    points, seen = [], set()
    for _ in range(50 * n):
        p = {k: samplers[k]() for k in keys}
        h = stable_hash(p)
        if h not in seen:
            seen.add(h)
            points.append(p)
        if len(points) == n:
            break
    return points
