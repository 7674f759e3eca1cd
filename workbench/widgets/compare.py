"""Meta-analysis panels: compare runs, what mattered, recommend a command for a dataset.

Thin shells over :mod:`workbench.meta`; figures are rendered to PNG through matplotlib's
object API (thread-safe, no pyplot state). Tests drive them with ``.value =`` and ``.click()``.
"""
from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any

import ipywidgets as W

__all__ = ["ComparePanel", "ImportancePanel", "RecommendPanel"]


def _png(draw, size=(7.0, 3.4)) -> bytes:
    """Draw on a fresh Figure (``draw(ax)``) and return PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    draw(fig.add_subplot(111))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def _error(msg: str) -> str:
    return f"<span style='color:#b00'>⚠ {html.escape(msg)}</span>"


class ComparePanel:
    """Pick runs → overlaid curves, a results table and the config keys that differ.

    Widgets: ``tag_filter`` (Text; e.g. ``sweep:…``), ``selector`` (SelectMultiple of run ids),
    ``metric`` (Dropdown), ``x_axis`` (step/epoch), ``smooth`` (EMA weight), ``compare_button``;
    outputs ``curves`` (Image), ``table`` and ``diff`` (HTML), ``message``.
    """

    def __init__(self, log: Any = None, runs: Any = None) -> None:
        from ..runlog import RunLog

        self.log = log or RunLog()
        self.tag_filter = W.Text(description="Tag", placeholder="e.g. sweep:my-sweep (empty: all runs)")
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        self.selector = W.SelectMultiple(options=[], rows=8, description="Runs", layout=W.Layout(width="100%"))
        self.metric = W.Dropdown(options=["train_loss"], value="train_loss", description="Metric")
        self.x_axis = W.ToggleButtons(options=["step", "epoch"], value="step", description="x")
        self.smooth = W.FloatSlider(value=0.0, min=0.0, max=0.95, step=0.05, description="Smooth")
        self.compare_button = W.Button(description="Compare", button_style="primary", icon="balance-scale")
        self.curves = W.Image(format="png", layout=W.Layout(width="640px"))
        self.table = W.HTML()
        self.diff = W.HTML()
        self.message = W.HTML()
        self.comparison = None
        self.tag_filter.observe(lambda _: self.refresh(), names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.compare_button.on_click(lambda _: self.show())
        for w in (self.metric, self.x_axis, self.smooth):
            w.observe(lambda _: self._redraw(), names="value")
        self.widget = W.VBox([W.HBox([self.tag_filter, self.refresh_button]), self.selector,
                              W.HBox([self.metric, self.compare_button]), W.HBox([self.x_axis, self.smooth]),
                              self.message, self.curves, self.table, self.diff])
        self.refresh()
        if runs is not None:
            ids = [r if isinstance(r, str) else r["id"] for r in runs]
            self.selector.value = tuple(i for i in ids if i in dict((v, v) for _, v in self.selector.options))
            self.show()

    def refresh(self) -> None:
        """Re-read the run log (runs with the tag, newest first)."""
        tag = self.tag_filter.value.strip() or None
        recs = self.log.find(tag=tag) if tag else self.log.runs()
        keep = tuple(v for v in self.selector.value if v in {r["id"] for r in recs})
        self.selector.options = [(f"{r.get('name')} · {r['id']} · {r.get('status')}", r["id"]) for r in reversed(recs)]
        self.selector.value = keep

    def show(self) -> None:
        """Compare the selected runs (two or more)."""
        from ..meta.compare import compare

        ids = list(self.selector.value)
        if len(ids) < 2:
            self.message.value = _error("select two or more runs")
            return
        try:
            self.comparison = compare(ids, log=self.log)
        except Exception as exc:  # shown in the panel, never a traceback in the front end
            self.message.value = _error(str(exc))
            return
        self.message.value = ""
        names = self.comparison.metrics or ["train_loss"]
        if list(self.metric.options) != names:
            keep = self.metric.value if self.metric.value in names else ("train_loss" if "train_loss" in names
                                                                         else names[0])
            self.metric.options = names
            self.metric.value = keep
        t = self.comparison.table.copy()
        self.table.value = t.to_html(float_format=lambda v: f"{v:.4g}", border=0)
        d = self.comparison.diff
        self.diff.value = ("<b>Config keys that differ</b>" + self.comparison.styled_diff().to_html()
                           if not d.empty else "<i>configs are identical</i>")
        self._redraw()

    def _redraw(self) -> None:
        if self.comparison is None:
            return
        try:
            self.curves.value = _png(lambda ax: self.comparison.plot(self.metric.value, x=self.x_axis.value,
                                                                     smooth=self.smooth.value, ax=ax))
        except ValueError as exc:
            self.message.value = _error(str(exc))


class ImportancePanel:
    """Which hyperparameters mattered for the runs with a tag (e.g. a sweep's).

    Widgets: ``tag_filter`` (Text), ``run_button``; outputs ``plot`` (Image), ``message`` (HTML,
    the too-few-runs warning), ``table`` (HTML).
    """

    def __init__(self, log: Any = None, tag: str = "") -> None:
        from ..runlog import RunLog

        self.log = log or RunLog()
        self.tag_filter = W.Text(value=tag, description="Tag", placeholder="sweep:…")
        self.run_button = W.Button(description="What mattered?", button_style="primary", icon="bar-chart")
        self.plot = W.Image(format="png", layout=W.Layout(width="520px"))
        self.message = W.HTML()
        self.table = W.HTML()
        self.importance = None
        self.run_button.on_click(lambda _: self.compute())
        self.widget = W.VBox([W.HBox([self.tag_filter, self.run_button]), self.message, self.plot, self.table])

    def compute(self) -> None:
        """Permutation importance over the finished runs with the tag."""
        import warnings

        from ..meta.importance import param_importance

        tag = self.tag_filter.value.strip() or None
        recs = self.log.find(tag=tag, status=["trained", "completed"])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the warning is shown in the panel instead
                self.importance = param_importance(recs, log=self.log)
        except ValueError as exc:
            self.message.value = _error(str(exc))
            return
        imp = self.importance
        self.message.value = _error(imp.warning) if imp.warning else f"{imp.n_runs} runs"
        n = len(imp.frame)
        self.plot.value = _png(imp.plot, size=(6.0, 0.45 * n + 1.4))
        self.table.value = imp.frame.to_html(float_format=lambda v: f"{v:.3f}", border=0)


class RecommendPanel:
    """Pick a dataset → recommended command (editable JSON) with its evidence → Start.

    Widgets: ``data`` (Combobox of dataset folders; any path may be typed), ``k``,
    ``recommend_button``, ``command`` (Textarea, JSON), ``start_button``; outputs
    ``evidence`` and ``status`` (HTML). ``job`` is the started job handle. ``kind`` restricts
    the past runs it learns from (default: baseline training runs).
    """

    def __init__(self, log: Any = None, data: str = "", kind: str | None = "baseline") -> None:
        from .. import paths
        from ..runlog import RunLog

        self.log = log or RunLog()
        folders = sorted(str(p) for p in paths.datasets_dir().iterdir() if p.is_dir())
        self.data = W.Combobox(value=str(data), options=folders, description="Dataset",
                               placeholder="image folder DIR/<class>/<image>", layout=W.Layout(width="70%"))
        self.k = W.IntSlider(value=3, min=1, max=10, description="k nearest")
        self.recommend_button = W.Button(description="Recommend", button_style="primary", icon="magic")
        self.evidence = W.HTML()
        self.command = W.Textarea(rows=12, layout=W.Layout(width="100%"), description="Command")
        self.start_button = W.Button(description="Start", button_style="success", icon="play", disabled=True)
        self.status = W.HTML()
        self.kind = kind
        self.recommendation = None
        self.job = None
        self.recommend_button.on_click(lambda _: self.recommend())
        self.start_button.on_click(lambda _: self.start())
        self.widget = W.VBox([self.data, W.HBox([self.k, self.recommend_button]), self.evidence, self.command,
                              W.HBox([self.start_button]), self.status])

    def recommend(self) -> None:
        """Recommend for the chosen folder; fill the command editor and the evidence."""
        from ..meta.recommend import recommend

        path = self.data.value.strip()
        if not path:
            self.evidence.value = _error("choose a dataset folder")
            return
        try:
            rec = recommend(Path(path).expanduser(), log=self.log, k=self.k.value, kind=self.kind)
        except Exception as exc:
            self.evidence.value = _error(str(exc))
            self.start_button.disabled = True
            return
        self.recommendation = rec
        ev = rec.neighbours[["task", "distance", "weight", "runs", "best_score", "recipe_score"]]
        self.evidence.value = ("<b>Evidence</b>: the nearest past tasks and their scores"
                               + ev.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0))
        self.command.value = json.dumps(rec.command, indent=1)
        self.start_button.disabled = False
        self.status.value = ""

    def start(self) -> None:
        """Start training the (possibly edited) command on the chosen folder in the background."""
        from ..jobs import start_training

        try:
            cmd = json.loads(self.command.value)
        except json.JSONDecodeError as exc:
            self.status.value = _error(f"command is not valid JSON: {exc.msg} at line {exc.lineno}")
            return
        try:
            self.job = start_training(cmd, data=self.data.value.strip(), log=self.log,
                                      tags=("recommended",))
        except Exception as exc:  # a bad edit: the validation message, no run created
            self.status.value = _error(str(exc))
            return
        self.status.value = f"started run <code>{html.escape(self.job.run_id)}</code>"
