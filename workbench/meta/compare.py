"""Compare stored runs: a results table, overlaid curves, and only the config keys that differ.

    from workbench.meta import compare
    c = compare(["run-a", "run-b"])        # ids, id prefixes, names or records
    c.table                                # final/best metrics, wall time, steps, score
    c.diff                                 # config keys whose values differ (rows) × runs (columns)
    c.plot("train_loss", smooth=0.6)       # overlaid curves by step (or x="epoch")
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from ..runlog import RunLog
from .common import as_records, flatten, hashable, lower_is_better, run_score

__all__ = ["Comparison", "compare", "runs_table", "curves_frame", "plot_curves", "config_diff", "smooth_ema",
           "run_label", "metric_names"]

X_AXES = ("step", "epoch", "time")


def run_label(rec: dict, taken: set[str] | None = None) -> str:
    """A short unique label for a run: its name, plus the id's tail when names repeat."""
    label = str(rec.get("name") or rec.get("id"))
    if taken is not None:
        if label in taken:
            label = f"{label} [{str(rec.get('id', ''))[-6:]}]"
        taken.add(label)
    return label


def smooth_ema(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard-style debiased exponential moving average (``weight`` in [0, 1)); NaN/inf pass through.

    pandas ``ewm(alpha=1 - weight, adjust=True)`` is exactly the debiased EMA; ``ignore_na``
    lets a non-finite point neither count nor reset the average, and the point itself is kept.
    """
    import numpy as np
    import pandas as pd

    if not 0 <= weight < 1:
        raise ValueError(f"smooth = {weight!r}: expected a weight in [0, 1) (0 = no smoothing)")
    x = np.asarray([float(v) for v in values], dtype=float)
    if weight == 0 or not len(x):
        return x.tolist()
    ok = np.isfinite(x)
    smooth = pd.Series(np.where(ok, x, np.nan)).ewm(alpha=1 - weight, adjust=True, ignore_na=True).mean().to_numpy()
    return np.where(ok, smooth, x).tolist()


def metric_names(runs: Iterable[Any], log: RunLog | None = None) -> list[str]:
    """All metric keys logged by the given runs (per step or per epoch), sorted."""
    names: set[str] = set()
    for rec in as_records(runs, log):
        for row in rec.get("metrics") or []:
            names.update(k for k in row if k not in ("step", "time", "epoch"))
        for e in rec.get("epochs") or []:
            names.update(k for k in e if k != "epoch")
    return sorted(names)


def _series(rec: dict, metric: str, x: str) -> tuple[list[float], list[float]]:
    if x not in X_AXES:
        raise ValueError(f"x = {x!r}: expected one of {', '.join(X_AXES)}")
    xs: list[float] = []
    ys: list[float] = []
    rows = rec.get("metrics") or []
    if x == "epoch":
        # per-epoch metrics: the record's epochs list, else the mean of per-step rows in each epoch
        eps = [e for e in rec.get("epochs") or [] if metric in e]
        if eps:
            for e in sorted(eps, key=lambda e: e["epoch"]):
                xs.append(float(e["epoch"]))
                ys.append(float(e[metric]))
            return xs, ys
        by_epoch: dict[int, list[float]] = {}
        for r in rows:
            if metric in r and r.get("epoch") is not None:
                by_epoch.setdefault(int(r["epoch"]), []).append(float(r[metric]))
        for ep in sorted(by_epoch):
            v = by_epoch[ep]
            xs.append(float(ep))
            ys.append(sum(v) / len(v))
        return xs, ys
    t0 = None
    for r in rows:
        if metric not in r or r[metric] is None:
            continue
        if x == "time":
            t0 = r["time"] if t0 is None else t0
            xs.append(float(r["time"]) - t0)
        else:
            xs.append(float(r.get("step", len(xs))))
        ys.append(float(r[metric]))
    return xs, ys


def curves_frame(runs: Iterable[Any], metric: str = "train_loss", x: str = "step", smooth: float = 0.0,
                 log: RunLog | None = None):
    """Long DataFrame ``run, label, x, value, smoothed`` of one metric for several runs."""
    import pandas as pd

    frames = []
    taken: set[str] = set()
    for rec in as_records(runs, log):
        xs, ys = _series(rec, metric, x)
        label = run_label(rec, taken)
        frames.append(pd.DataFrame({"run": rec["id"], "label": label, x: xs, "value": ys,
                                    "smoothed": smooth_ema(ys, smooth)}))
    if not frames:
        return pd.DataFrame(columns=["run", "label", x, "value", "smoothed"])
    return pd.concat(frames, ignore_index=True)


def plot_curves(runs: Iterable[Any], metric: str = "train_loss", x: str = "step", smooth: float = 0.0,
                ax: Any = None, log_y: bool = False, log: RunLog | None = None):
    """Overlay one metric's curves for several runs on a matplotlib Axes (returned)."""
    import matplotlib.pyplot as plt

    df = curves_frame(runs, metric, x, smooth, log)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    for label, g in df.groupby("label", sort=False):
        line, = ax.plot(g[x], g["smoothed"], label=str(label), lw=1.5)
        if smooth > 0:  # the raw curve, faint, behind the smoothed one
            ax.plot(g[x], g["value"], color=line.get_color(), alpha=0.25, lw=0.8)
    ax.set_xlabel(x)
    ax.set_ylabel(metric + (f" (EMA {smooth:g})" if smooth else ""))
    if log_y:
        ax.set_yscale("log")
    if not df.empty:
        ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return ax


def runs_table(runs: Iterable[Any], log: RunLog | None = None, metrics: Sequence[str] | None = None):
    """One row per run: status, wall time, steps, final and best value of each metric, score.

    ``metrics`` defaults to every metric the runs logged. "Best" is the minimum for losses
    and errors and the maximum otherwise; NaN/inf values count as diverged, never as best.
    """
    import pandas as pd

    recs = as_records(runs, log)
    names = list(metrics) if metrics is not None else metric_names(recs)
    rows = []
    taken: set[str] = set()
    for rec in recs:
        row: dict[str, Any] = {"id": rec["id"], "label": run_label(rec, taken), "kind": rec.get("kind"),
                               "status": rec.get("status")}
        d = rec.get("durations") or {}
        row["wall_s"] = d.get("train_s", d.get("total_s"))
        steps = [r.get("step") for r in rec.get("metrics") or [] if r.get("step") is not None]
        row["steps"] = (max(steps) + 1) if steps else 0
        row["epochs"] = len(rec.get("epochs") or [])
        for m in names:
            xs, ys = _series(rec, m, "step")
            if not ys:
                xs, ys = _series(rec, m, "epoch")
            finite = [v for v in ys if math.isfinite(v)]
            row[f"final.{m}"] = ys[-1] if ys else math.nan
            if finite:
                row[f"best.{m}"] = min(finite) if lower_is_better(m) else max(finite)
            else:
                row[f"best.{m}"] = math.nan
        row["diverged"] = any(not math.isfinite(v) for r in rec.get("metrics") or []
                              for k, v in r.items() if k not in ("step", "time", "epoch")
                              and isinstance(v, float))
        row["score"] = run_score(rec)
        rows.append(row)
    df = pd.DataFrame(rows)
    return df.set_index("id") if not df.empty else df


def config_diff(runs: Iterable[Any], log: RunLog | None = None, include_test: bool = False):
    """Config keys (dotted) whose values differ between runs: rows = keys, columns = run labels.

    A key missing from some runs counts as different (shown as ``<missing>``).
    """
    import pandas as pd

    recs = as_records(runs, log, metrics=False)
    flats = []
    labels = []
    taken: set[str] = set()
    for rec in recs:
        cfg = flatten(rec.get("config") or {})
        if include_test:
            cfg.update(flatten(rec.get("test_config") or {}, "test"))
        flats.append(cfg)
        labels.append(run_label(rec, taken))
    keys: list[str] = []
    for f in flats:
        keys.extend(k for k in f if k not in keys)
    missing = "<missing>"
    rows = {}
    for k in keys:
        vals = [hashable(f.get(k, missing)) if k in f else missing for f in flats]
        if len(set(map(str, vals))) > 1:
            rows[k] = vals
    df = pd.DataFrame.from_dict(rows, orient="index", columns=labels) if rows else pd.DataFrame(columns=labels)
    df.index.name = "config key"
    return df


def _highlight_diff(df):
    """A pandas Styler colouring each cell that differs from the first run's value."""
    def colour(row):
        first = str(row.iloc[0])
        return ["" if i == 0 or str(v) == first else "background-color: #ffe9a8" for i, v in enumerate(row)]
    return df.style.apply(colour, axis=1)


@dataclass
class Comparison:
    """The result of :func:`compare`: ``table``, ``diff`` and the records, plus plotting."""

    records: list[dict]
    table: Any
    diff: Any
    metrics: list[str] = field(default_factory=list)

    def plot(self, metric: str = "train_loss", x: str = "step", smooth: float = 0.0, ax: Any = None,
             log_y: bool = False):
        """Overlaid curves of ``metric`` (see :func:`plot_curves`)."""
        if metric not in self.metrics:
            raise ValueError(f"metric {metric!r} was not logged by these runs; available: "
                             f"{', '.join(self.metrics) or '(none)'}")
        return plot_curves(self.records, metric, x, smooth, ax=ax, log_y=log_y)

    def styled_diff(self):
        """The config diff with cells that differ from the first run highlighted."""
        return _highlight_diff(self.diff)

    def best(self) -> str | None:
        """Id of the run with the highest score (``None`` when no run has one)."""
        scored = self.table["score"].dropna() if "score" in self.table else []
        return str(scored.idxmax()) if len(scored) else None


def compare(runs: Iterable[Any], log: RunLog | None = None, metrics: Sequence[str] | None = None) -> Comparison:
    """Compare runs (ids, prefixes, names, records or job handles): table, config diff, curves."""
    recs = as_records(runs, log)
    if not recs:
        raise ValueError("compare: no runs given")
    names = metric_names(recs)
    return Comparison(recs, runs_table(recs, metrics=metrics), config_diff(recs), names)
