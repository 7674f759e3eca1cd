"""Meta-analysis panels: compare runs, and what mattered.

Thin shells over :mod:`workbench.meta`; charts are interactive (:mod:`workbench.widgets.views`).
Tests drive them with ``.value =`` and ``.click()``. The recommend panel lives in
:mod:`workbench.widgets.recommend` (re-exported here).
"""
from __future__ import annotations

import html
import json
import math
from collections import Counter
from typing import Any, Sequence

import ipywidgets as W

from . import plots
from .runs import set_options
from .common import heading
from .views import ChartView, CurvesView

__all__ = ["ComparePanel", "ImportancePanel", "RecommendPanel", "table_html", "diff_html"]


def _error(msg: str) -> str:
    return f"<span style='color:#b00'>⚠ {html.escape(msg)}</span>"


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "<span style='color:#aaa'>—</span>"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def table_html(table: Any, limit_metrics: Sequence[str] | None = None) -> str:
    """A comparison's results table that fits a notebook: run names, one column per metric
    with ``final (best)``, numbers to 4 digits, long names wrapped."""
    if table is None or len(table) == 0:
        return ""
    metrics = [c[len("final."):] for c in table.columns if c.startswith("final.")]
    if limit_metrics is not None:
        metrics = [m for m in metrics if m in limit_metrics]
    head = ["run", "status", "score", "wall s", "steps"] + metrics
    rows = []
    for _, r in table.iterrows():
        cells = [f"<b>{html.escape(str(r.get('label')))}</b>", _cell(r.get("status")), _cell(r.get("score")),
                 _cell(r.get("wall_s")), _cell(r.get("steps"))]
        for m in metrics:
            fin, best = r.get(f"final.{m}"), r.get(f"best.{m}")
            same = isinstance(fin, float) and isinstance(best, float) and fin == best
            cells.append(_cell(fin) + ("" if same or best is None else f" <span style='color:#777'>({_cell(best)})</span>"))
        rows.append("".join(f"<td style='padding:2px 8px;word-break:break-word'>{c}</td>" for c in cells))
    th = "".join(f"<th style='padding:2px 8px;text-align:left;word-break:break-word'>{html.escape(h)}</th>"
                 for h in head)
    return ("<div style='overflow-x:auto;max-width:100%'><table style='font-size:0.85em;border-collapse:collapse'>"
            f"<tr style='border-bottom:1px solid #ccc'>{th}</tr>"
            + "".join(f"<tr>{r}</tr>" for r in rows) + "</table>"
            "<div style='color:#777;font-size:0.8em'>metric columns: final value (best value)</div></div>")


def diff_html(diff: Any) -> str:
    """The config keys that differ, one row each; the cells that differ from the row's most common
    value are highlighted (a key a run lacks shows as —); long values wrap or fold away."""
    if diff is None or diff.empty:
        return "<i>configs are identical</i>"
    labels = [str(c) for c in diff.columns]
    out = []
    for key, row in diff.iterrows():
        vals = [str(v) for v in row]
        common = Counter(vals).most_common(1)[0][0]
        cells = []
        for v in row:
            text = "—" if v == "<missing>" else (v if isinstance(v, str) else json.dumps(v, default=str))
            shown = html.escape(text)
            if len(text) > 80:
                shown = f"<details><summary>{html.escape(text[:60])}…</summary>{shown}</details>"
            style = "background:#ffe9a8;" if str(v) != common else ""
            cells.append(f"<td style='{style}padding:2px 8px;word-break:break-word;max-width:320px'>{shown}</td>")
        out.append(f"<tr><td style='padding:2px 8px'><code>{html.escape(str(key))}</code></td>{''.join(cells)}</tr>")
    th = "".join(f"<th style='padding:2px 8px;text-align:left;word-break:break-word'>{html.escape(h)}</th>"
                 for h in labels)
    return ("<b>Config keys that differ</b> <span style='color:#777'>(highlighted: differs from the most common "
            "value)</span><div style='overflow-x:auto'><table style='font-size:0.85em;table-layout:fixed'>"
            f"<tr><th style='text-align:left'>key</th>{th}</tr>{''.join(out)}</table></div>")


class ComparePanel:
    """Pick runs → overlaid interactive curves, a results table and the config keys that differ.

    Widgets: ``tag_filter`` (Text; e.g. ``sweep:…``), ``selector`` (SelectMultiple of run ids),
    ``compare_button``; ``curves`` (:class:`CurvesView`: ``metric``, ``x_axis``, ``smooth``,
    ``y_scale``); outputs ``table`` and ``diff`` (HTML), ``message``.
    """

    def __init__(self, log: Any = None, runs: Any = None) -> None:
        from ..runlog import RunLog

        self.log = log or RunLog()
        style = {"description_width": "initial"}
        self.tag_filter = W.Text(description="Runs with tag", style=style, layout=W.Layout(width="420px"),
                                 placeholder="e.g. sweep:my-sweep (empty: all runs)")
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        self.selector = W.SelectMultiple(options=[], rows=8, description="Runs", layout=W.Layout(width="100%"))
        self.compare_button = W.Button(description="Compare", button_style="primary", icon="balance-scale")
        self.curves = CurvesView(height=340)
        self.curves.widget.layout.display = "none"
        self.metric, self.x_axis, self.smooth = self.curves.metric, self.curves.x_axis, self.curves.smooth
        self.table = W.HTML()
        self.diff = W.HTML()
        self.message = W.HTML()
        self.comparison = None
        self.tag_filter.observe(lambda _: self.refresh(), names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.compare_button.on_click(lambda _: self.show())
        self.widget = W.VBox([heading("Compare runs", "overlay their curves, see their results and what differs"),
                              W.HBox([self.tag_filter, self.refresh_button]), self.selector,
                              W.HBox([self.compare_button]), self.message, self.curves.widget, self.table, self.diff])
        self.refresh()
        if runs is not None:
            ids = [r if isinstance(r, str) else r["id"] for r in runs]
            self.selector.value = tuple(i for i in ids if i in {v for _, v in self.selector.options})
            self.show()

    def refresh(self) -> None:
        """Re-read the run log (runs with the tag, newest first); an empty match clears the results."""
        tag = self.tag_filter.value.strip() or None
        recs = self.log.find(tag=tag) if tag else self.log.runs()
        keep = tuple(v for v in self.selector.value if v in {r["id"] for r in recs})
        set_options(self.selector, [(f"{r.get('name')} · {r['id']} · {r.get('status')}", r["id"])
                                    for r in reversed(recs)], keep)
        if not recs:
            self.message.value = _error(f"no runs have the tag {tag!r}") if tag else "<i>the run log is empty</i>"
        elif self.message.value.startswith("<span style='color:#b00'>⚠ no runs"):
            self.message.value = ""
        if len(keep) < 2 and self.comparison is not None:
            self._clear()

    def _clear(self) -> None:
        self.comparison = None
        self.table.value = self.diff.value = ""
        self.curves.records = []
        self.curves.widget.layout.display = "none"

    def show(self) -> None:
        """Compare the selected runs (two or more)."""
        from ..meta.compare import compare

        ids = list(self.selector.value)
        if len(ids) < 2:
            self._clear()
            self.message.value = _error("select two or more runs")
            return
        try:
            self.comparison = compare(ids, log=self.log)
        except Exception as exc:  # shown in the panel, never a traceback in the front end
            self._clear()
            self.message.value = _error(str(exc))
            return
        self.message.value = ""
        self.curves.widget.layout.display = ""
        self.curves.set_runs(self.comparison.records, self.comparison.metrics or ["train_loss"])
        self.table.value = "<b>Results</b>" + table_html(self.comparison.table)
        self.diff.value = diff_html(self.comparison.diff)


class ImportancePanel:
    """Which hyperparameters mattered for the runs with a tag (e.g. a sweep's or a study's).

    Widgets: ``tag_filter`` (Text), ``run_button``; outputs ``plot`` (:class:`ChartView`),
    ``message`` (HTML: run count, or the too-few-runs warning), ``table`` (HTML).
    """

    def __init__(self, log: Any = None, tag: str = "") -> None:
        from ..runlog import RunLog

        self.log = log or RunLog()
        style = {"description_width": "initial"}
        self.tag_filter = W.Text(value=tag, description="Runs with tag", placeholder="sweep:… or study:…",
                                 style=style, layout=W.Layout(width="420px"))
        self.run_button = W.Button(description="What mattered?", button_style="primary", icon="bar-chart")
        self.plot = ChartView(height=300, hidden=True)
        self.message = W.HTML()
        self.table = W.HTML()
        self.importance = None
        self.run_button.on_click(lambda _: self.compute())
        self.widget = W.VBox([heading("What mattered", "hyperparameter importance over finished, scored runs"),
                              W.HBox([self.tag_filter, self.run_button]), self.message, self.plot.widget,
                              self.table])

    def compute(self) -> None:
        """Permutation importance over the finished runs with the tag (clears the old result first)."""
        import warnings

        from ..meta.importance import param_importance

        self.importance = None
        self.table.value = ""
        self.plot.clear(hide=True)
        tag = self.tag_filter.value.strip() or None
        recs = self.log.find(tag=tag, status=["trained", "completed"])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the warning is shown in the panel instead
                self.importance = param_importance(recs, log=self.log)
        except ValueError as exc:
            self.message.value = _error(f"{exc} ({len(recs)} finished runs"
                                        + (f" with the tag {tag!r})" if tag else ")"))
            return
        imp = self.importance
        self.message.value = _error(imp.warning) if imp.warning else f"{imp.n_runs} scored runs"
        self.plot.show(plots.importance_chart(imp))
        self.table.value = imp.frame.to_html(float_format=lambda v: f"{v:.3f}", border=0)


def __getattr__(name: str) -> Any:
    if name == "RecommendPanel":  # moved to its own module; still importable from here
        from .recommend import RecommendPanel

        return RecommendPanel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
