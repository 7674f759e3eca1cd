"""Interactive chart widgets for the panels: a live plotly ``FigureWidget`` and its controls.

:class:`ChartView` shows any chart and redraws it in place; :class:`CurvesView` adds the
controls people expect from TensorBoard — which logged metric, x by step/epoch/time, smoothing,
linear/log y — over a set of runs. Both may be redrawn from a panel's background thread (a lock
keeps a redraw from the poller and one from a control apart); the figure's state messages reach
the page whichever cell is running.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Mapping, Sequence

import ipywidgets as W

from . import charts, plots
from .charts import LineChart


def figure_widget(chart: charts.Chart | None = None, height: int = 340) -> Any:
    """A ``go.FigureWidget`` drawing ``chart`` (an empty line chart by default)."""
    import plotly.graph_objects as go

    d = charts.figure_dict(chart or LineChart())
    d["layout"]["height"] = d["layout"].get("height") or height
    return go.FigureWidget(d)


class ChartView:
    """A chart in a panel; ``show(chart)`` redraws it in place, ``clear(text)`` empties it.

    ``figure`` is the ``go.FigureWidget`` (tests read ``figure.data`` / ``figure.layout``);
    ``chart`` the last chart shown; ``widget`` what a panel lays out. A view made ``hidden`` has
    no figure until its first :meth:`show`: plotly lays a figure out in its container, and one
    first drawn in a hidden container has no size (the page then logs "attribute height:
    Expected length, NaN" errors).
    """

    def __init__(self, chart: charts.Chart | None = None, height: int = 340, hidden: bool = False) -> None:
        self.chart = chart
        self.height = height
        self.figure = None if hidden else figure_widget(chart, height)
        self.widget = W.Box([self.figure] if self.figure is not None else [],
                            layout=W.Layout(width="100%", display="none" if hidden else ""))
        self._lock = threading.RLock()

    def show(self, chart: charts.Chart) -> None:
        """Draw ``chart`` (replacing the previous one) and make the view visible (visible first)."""
        with self._lock:
            self.widget.layout.display = ""
            if self.figure is None:
                self.figure = figure_widget(chart, self.height)
                self.widget.children = [self.figure]
            else:
                charts.to_plotly(chart, self.figure)
            self.chart = chart

    def clear(self, text: str = "nothing selected", hide: bool = False) -> None:
        """Empty the figure, leaving ``text`` in its middle; or just hide the view (its old content
        is replaced by the next :meth:`show`)."""
        if hide:
            self.widget.layout.display = "none"
            return
        self.show(LineChart(title="", empty_text=text, log_switch=False))


class CurvesView:
    """Curves of the given runs with metric / x / smoothing / y-scale controls.

    ``set_runs(records)`` replaces the runs (records with ``metrics`` folded in, or dicts
    ``{"id", "name", "metrics", "epochs"}`` for a live job) and redraws; the controls redraw
    on change. Widgets: ``metric`` (Dropdown), ``x_axis``, ``smooth``, ``y_scale``
    (ToggleButtons ``linear`` / ``log``), ``view`` (:class:`ChartView`).
    """

    def __init__(self, metrics: Sequence[str] = ("train_loss",), title: str = "", pair: Mapping[str, str] | None = None,
                 height: int = 340, x_options: Sequence[str] = ("step", "epoch", "time")) -> None:
        style = {"description_width": "initial"}
        self.metric = W.Dropdown(options=list(metrics), value=metrics[0], description="Metric", style=style,
                                 layout=W.Layout(width="230px"))
        self.x_axis = W.ToggleButtons(options=list(x_options), value=x_options[0], description="x axis",
                                      style={**style, "button_width": "64px"})
        self.smooth = W.FloatSlider(value=0.0, min=0.0, max=0.95, step=0.05, description="Smoothing", style=style,
                                    continuous_update=False, layout=W.Layout(width="230px"))
        self.y_scale = W.ToggleButtons(options=["linear", "log"], value="linear", description="y axis",
                                       style={**style, "button_width": "64px"}, tooltip="y axis scale")
        self.title = title
        #: metric → a second metric drawn dashed with it (``train_loss`` → ``val_loss``)
        self.pair = dict(pair or {"train_loss": "val_loss"})
        self.view = ChartView(height=height)
        self.view.clear("no runs yet")
        self.records: list[dict] = []
        self.on_error: Callable[[str], None] | None = None
        for w in (self.metric, self.x_axis, self.smooth, self.y_scale):
            w.observe(lambda _: self.redraw(), names="value")
        self.controls = W.HBox([self.metric, self.x_axis, self.smooth, self.y_scale],
                               layout=W.Layout(flex_flow="row wrap"))
        self.widget = W.VBox([self.controls, self.view.widget])

    def set_metrics(self, names: Sequence[str]) -> None:
        """Offer these metrics (keeps the current one when it is still there)."""
        names = list(names) or ["train_loss"]
        if list(self.metric.options) != names:
            keep = self.metric.value if self.metric.value in names else (
                "train_loss" if "train_loss" in names else names[0])
            with self.metric.hold_trait_notifications():
                self.metric.options = names
                self.metric.value = keep

    def set_runs(self, records: Sequence[Mapping[str, Any]], metrics: Sequence[str] | None = None) -> None:
        """Show these runs; ``metrics`` (default: every metric they logged) fills the dropdown."""
        from ..meta.compare import metric_names

        self.records = [dict(r) for r in records]
        self.set_metrics(metrics if metrics is not None else metric_names(self.records))
        self.redraw()

    def chart(self) -> LineChart:
        """The chart the controls ask for, over the current runs."""
        m = self.metric.value
        metrics = [m] + ([self.pair[m]] if m in self.pair and self._logged(self.pair[m]) else [])
        title = self.title or f"{m} of {len(self.records)} run{'s' if len(self.records) != 1 else ''}"
        return plots.curves_chart(self.records, metrics, self.x_axis.value, self.smooth.value,
                                  self.y_scale.value == "log", title=title, log_switch=False)

    def _logged(self, metric: str) -> bool:
        return any(metric in row for r in self.records for row in (r.get("metrics") or []))

    def redraw(self) -> None:
        """Redraw from the current runs and controls (thread-safe)."""
        if not self.records:
            self.view.clear("no runs selected")
            return
        try:
            self.view.show(self.chart())
        except ValueError as exc:  # e.g. no such metric on this axis: say so in the plot
            self.view.clear(str(exc))
            if self.on_error:
                self.on_error(str(exc))
