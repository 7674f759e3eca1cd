"""Plots for notebooks and panels: what the module functions compute, drawn as charts.

Each function here turns records or results into a chart (:mod:`workbench.widgets.charts`);
the computing is done elsewhere (``workbench.meta.compare.curves_frame``, ``param_importance``,
the run log). A chart shows itself in a notebook as an interactive plotly figure with a PNG
beside it (exported HTML and the headless tour show the PNG); ``.png()`` gives the static
rendering for the CLI::

    from workbench.widgets import plots
    plots.curves(run_ids, "train_loss", smooth=0.6)     # zoom, hover values, log/linear buttons
    plots.confusion(run_id)
    plots.curves(run_ids, "val_accuracy", x="epoch").png()
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

from . import charts
from .charts import BarChart, Heatmap, LineChart, Marker, Parallel, Series, Shown

__all__ = ["curves", "curves_chart", "confusion", "confusion_chart", "importance_chart", "parallel_chart",
           "anytime_chart", "trial_curves_chart", "stop_point", "live_curves", "Shown"]


def stop_point(rec: Mapping[str, Any]) -> tuple[int, str] | None:
    """Where a run was stopped early, and why: a gone-bad call or a pruned trial (``None`` if neither)."""
    gb = rec.get("gone_bad") or {}
    if gb.get("call") not in (None, "ok") and gb.get("step") is not None:
        return int(gb["step"]), f"{gb['call']}: {gb.get('reason', '')}"
    pruned = rec.get("pruned") or (rec.get("summary") or {}).get("pruned")
    if isinstance(pruned, Mapping) and pruned.get("step") is not None:
        return int(pruned["step"]), f"pruned: {pruned.get('reason', '')}".rstrip(": ")
    return None


def _value_at(xs: Sequence[float], ys: Sequence[float], x: float) -> float | None:
    """The curve's value at the last point at or before ``x``."""
    best = None
    for a, b in zip(xs, ys):
        if a <= x:
            best = b
    return best if best is not None else (ys[0] if len(ys) else None)


def curves_chart(runs: Iterable[Any], metric: str | Sequence[str] = "train_loss", x: str = "step",
                 smooth: float = 0.0, log_y: bool = False, title: str | None = None, log: Any = None,
                 log_switch: bool = True) -> LineChart:
    """Overlaid curves of one or more metrics for several runs, labelled by run name.

    A second metric is dashed (e.g. ``["train_loss", "val_loss"]``); with smoothing the raw
    curve stays faint behind; a run stopped early (gone bad, pruned) gets an ✕ at its stop point.
    """
    from ..meta.common import as_records
    from ..meta.compare import curves_frame

    metrics = [metric] if isinstance(metric, str) else list(metric)
    recs = as_records(runs, log)
    chart = LineChart(title=title if title is not None else " · ".join(metrics), x_label=x,
                      y_label=metrics[0] if len(metrics) == 1 else ("loss" if all("loss" in m for m in metrics)
                                                                    else "value"), log_y=log_y, log_switch=log_switch,
                      empty_text=f"no {' / '.join(metrics)} logged yet")
    groups: dict[str, int] = {}
    for j, m in enumerate(metrics):
        df = curves_frame(recs, m, x, smooth)
        for (rid, label), g in df.groupby(["run", "label"], sort=False):
            gi = groups.setdefault(rid, len(groups))
            name = str(label) if len(metrics) == 1 else f"{label} · {m}"
            xs, raw, sm = g[x].tolist(), g["value"].tolist(), g["smoothed"].tolist()
            if smooth > 0:
                chart.series.append(Series(name, xs, raw, gi, dash=j > 0, faint=True))
            chart.series.append(Series(name, xs, sm if smooth > 0 else raw, gi, dash=j > 0))
    if x == "step":
        for rec in recs:
            sp = stop_point(rec)
            s = next((s for s in chart.series if not s.faint and groups.get(rec.get("id")) == s.group), None)
            if sp and s is not None:
                y = _value_at(s.x, s.y, sp[0])
                if y is not None:
                    chart.markers.append(Marker(f"{s.name.split(' · ')[0]} stopped", sp[0], y, sp[1], s.group))
    return charts.clip_spikes(chart)


def curves(runs: Iterable[Any], metric: str | Sequence[str] = "train_loss", x: str = "step", smooth: float = 0.0,
           log_y: bool = False, title: str | None = None, log: Any = None) -> Shown:
    """:func:`curves_chart`, ready to display (interactive in JupyterLab; ``.png()`` for files)."""
    return Shown(curves_chart(runs, metric, x, smooth, log_y, title, log))


def confusion_chart(rec: Mapping[str, Any]) -> Heatmap | None:
    """The test confusion matrix of a run record (``None`` when it has none)."""
    s = rec.get("summary") or {}
    if not (s.get("confusion_matrix") and s.get("classes")):
        return None
    acc = s.get("test_accuracy")
    title = f"{rec.get('name', '')}: test confusion matrix" + (f" (accuracy {acc:.3f})" if isinstance(acc, float) else "")
    return Heatmap([list(map(float, r)) for r in s["confusion_matrix"]], list(map(str, s["classes"])),
                   list(map(str, s["classes"])), title=title)


def confusion(run: Any, log: Any = None) -> Shown:
    """A run's confusion matrix, ready to display."""
    from ..meta.common import as_records

    rec = as_records([run], log, metrics=False)[0]
    chart = confusion_chart(rec)
    if chart is None:
        raise ValueError(f"run {rec.get('id')} ({rec.get('name')}) has no confusion matrix: test it first")
    return Shown(chart)


def importance_chart(imp: Any, others: Mapping[str, Mapping[str, float]] | None = None) -> BarChart:
    """Importance shares per parameter (ours, ± std), and other methods' shares beside them.

    ``imp`` is a :class:`workbench.meta.Importance`; ``others`` maps a method name (e.g.
    ``"fANOVA (Optuna)"``) to ``{param: share}``.
    """
    f = imp.frame
    labels = [str(p) for p in f.index]
    total = float(f["importance"].sum()) or 1.0
    groups = {"permutation (ours)": [float(v) for v in f["share"]]}
    errors = {"permutation (ours)": [float(v) / total for v in f["std"]]}
    for name, shares in (others or {}).items():
        for p in shares:
            if p not in labels:
                labels.append(str(p))
        for g in groups.values():
            g.extend([0.0] * (len(labels) - len(g)))
        errors["permutation (ours)"].extend([0.0] * (len(labels) - len(errors["permutation (ours)"])))
        groups[name] = [float(shares.get(p, 0.0)) for p in labels]
    return BarChart(labels, groups, errors, title=f"What mattered for {imp.target} ({imp.n_runs} runs)",
                    x_label="share of importance", note=("⚠ " + imp.warning[:110]) if imp.warning else "")


def parallel_chart(frame: Any, params: Sequence[str], score: str = "score", title: str = "") -> Parallel:
    """Parallel coordinates of a sweep or study: ``frame`` has one row per run, a column per
    parameter and a score column (rows without a score are left out)."""
    import math as _m

    rows = frame[frame[score].notna()] if score in frame else frame.iloc[:0]
    dims = []
    for p in params:
        if p not in rows:
            continue
        vals = rows[p].tolist()
        nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(nums) == len(vals) and nums and min(nums) > 0 and max(nums) / min(nums) >= 20:
            dims.append((f"log10 {p}", [_m.log10(v) for v in vals]))  # a learning rate reads on a log axis
        else:
            dims.append((p, vals))
    dims.append((score, [float(v) for v in rows[score]]))
    return Parallel(dims, [float(v) for v in rows[score]], score,
                    title=title or f"{len(rows)} runs: parameters → {score}")


def anytime_chart(curves_by_method: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str = "",
                  x_label: str = "epochs trained", y_label: str = "best score so far",
                  target: float | None = None) -> LineChart:
    """Best-so-far staircases, one per method (``{method: (compute, best)}``), and an optional target line."""
    chart = LineChart(title=title or "Best so far vs compute", x_label=x_label, y_label=y_label, log_switch=False)
    for i, (name, (xs, ys)) in enumerate(curves_by_method.items()):
        chart.series.append(Series(name, list(map(float, xs)), list(map(float, ys)), i, step=True, markers=False))
    if target is not None and chart.series:
        hi = max(max(s.x) for s in chart.series if s.x)
        chart.series.append(Series("target", [0.0, hi], [target, target], 7, dash=True, markers=False))
    return chart


def trial_curves_chart(rows: Sequence[Mapping[str, Any]], title: str = "", metric: str = "val_accuracy") -> LineChart:
    """Each trial's per-epoch curve (``{"name", "curve", "pruned"}`` rows): finished trials in blue,
    pruned ones in grey with an ✕ where the pruner stopped them."""
    n_pruned = sum(bool(r.get("pruned")) for r in rows)
    chart = LineChart(title=title or f"{len(rows)} trials, {n_pruned} stopped early by the pruner", x_label="epoch",
                      y_label=metric, log_switch=False)
    stops_x, stops_y, stops_text = [], [], []
    for r in rows:
        ys = [float(v) for v in r["curve"]]
        xs = [float(i + 1) for i in range(len(ys))]
        pruned = bool(r.get("pruned"))
        chart.series.append(Series(str(r["name"]), xs, ys, 7 if pruned else 0, markers=False, legend=False))
        if pruned and ys:
            stops_x.append(xs[-1])
            stops_y.append(ys[-1])
            stops_text.append(f"{r['name']} pruned after epoch {len(ys)}")
    if stops_x:
        chart.series.append(Series("stopped by the pruner", stops_x, stops_y, 3, only_markers=True, hover=stops_text))
    return chart


def live_curves(every: int = 10, title: str | None = None):
    """A Lightning callback drawing meta-train loss and meta-val accuracy in the notebook as training runs.

    Outside IPython it only collects the history (``.history``); pass it to any run:
    ``run_training(…, callbacks=[live_curves()])`` or ``train_from_command(…, callbacks=[…])``.
    It updates a display from the training thread, so use it with synchronous training in a
    notebook cell (panels update widget values instead). The last drawing carries a PNG too.
    """
    import pytorch_lightning as pl

    class LiveCurves(pl.Callback):
        def __init__(self) -> None:
            self.history: dict[str, list[tuple[int, float]]] = {"train_loss": [], "val_accuracy": []}
            self._handles: dict[str, Any] = {}

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            v = trainer.callback_metrics.get("train_loss")
            if v is not None:
                self.history["train_loss"].append((trainer.global_step, float(v)))
            if trainer.global_step % every == 0:
                self.draw(final=False)

        def on_validation_epoch_end(self, trainer, pl_module) -> None:
            v = trainer.callback_metrics.get("val_accuracy")
            if v is not None and not trainer.sanity_checking:
                self.history["val_accuracy"].append((trainer.global_step, float(v)))

        def on_train_end(self, trainer, pl_module) -> None:
            self.draw(final=True)

        def charts(self) -> list[LineChart]:
            out = []
            for key, label in (("train_loss", "meta-train loss"), ("val_accuracy", "meta-val accuracy")):
                pts = self.history[key]
                c = LineChart(title=f"{title}: {label}" if title else label, x_label="meta-iteration",
                              y_label=label, empty_text="waiting for the first points")
                if pts:
                    xs, ys = zip(*pts)
                    c.series.append(Series(label, list(xs), list(ys), 0 if key == "train_loss" else 2))
                out.append(c)
            return out

        def draw(self, final: bool) -> None:
            try:
                from IPython import get_ipython
                from IPython.display import display
            except ImportError:
                return
            if get_ipython() is None:
                return
            for chart in self.charts():
                bundle = charts.mimebundle(chart) if final else {
                    "application/vnd.plotly.v1+json": charts.figure_dict(chart), "text/plain": chart.title}
                h = self._handles.get(chart.title)
                if h is None:
                    self._handles[chart.title] = display(bundle, raw=True, display_id=True)
                else:
                    h.update(bundle, raw=True)

    return LiveCurves()


def finite_or_none(v: Any) -> float | None:
    """``v`` as a float when it is a finite number, else ``None`` (table cells, hover text)."""
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None
