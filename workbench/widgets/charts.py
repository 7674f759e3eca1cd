"""Charts: one description, two renderers.

A chart is plain data (:class:`LineChart`, :class:`BarChart`, :class:`Heatmap`,
:class:`Parallel`), built from what the module functions compute (``workbench.meta``, the run
log). :func:`to_plotly` draws it as an interactive plotly figure — zoom, hover values, legend
toggles, a log/linear switch — or updates a live ``go.FigureWidget`` in place (panels do that
from a background thread: widget state messages reach the page whichever cell runs).
:func:`draw` and :func:`png` draw the same chart with matplotlib's object API (no pyplot
state, thread-safe) for the headless tour, the CLI and exported HTML.

In a notebook a chart displays itself as both: JupyterLab renders the plotly figure, and
nbconvert's HTML (``tour --out``) shows the PNG. Both use the same colours.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

#: matplotlib's tab10, used by both renderers so a run has one colour everywhere.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]
#: Below this many points a series is drawn with markers (a run with one validation point stays visible).
FEW_POINTS = 25


def colour(i: int) -> str:
    """The ``i``-th colour of the shared palette."""
    return PALETTE[i % len(PALETTE)]


@dataclass
class Series:
    """One line: ``group`` picks the colour (a run's raw, smoothed, train and val curves share one)."""

    name: str
    x: list[float]
    y: list[float]
    group: int = 0
    dash: bool = False
    faint: bool = False        # the raw curve behind a smoothed one: no legend entry, no hover
    markers: bool | None = None  # None: markers when there are few points
    hover: list[str] | None = None
    step: bool = False         # a staircase (best-so-far curves)
    only_markers: bool = False  # points, no line (stop points of many runs in one legend entry)
    legend: bool = True

    def show_markers(self) -> bool:
        return self.markers if self.markers is not None else len(self.x) <= FEW_POINTS


@dataclass
class Marker:
    """A labelled point: where a run was stopped, pruned or called gone bad."""

    name: str
    x: float
    y: float
    text: str
    group: int = 0
    symbol: str = "x"


@dataclass
class LineChart:
    """Curves on one axis; ``y_range`` (set by :func:`robust_range`) keeps a spike from flattening the rest."""

    series: list[Series] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    title: str = ""
    x_label: str = "step"
    y_label: str = ""
    log_y: bool = False
    y_range: tuple[float, float] | None = None
    note: str = ""
    empty_text: str = "no data yet"
    log_switch: bool = True    # the plotly figure carries its own linear/log buttons

    def values(self) -> list[float]:
        return [v for s in self.series if not s.faint for v in s.y if _finite(v)]


@dataclass
class BarChart:
    """Horizontal bars (importance): one group of bars per method, ``errors`` optional."""

    labels: list[str]
    groups: dict[str, list[float]]
    errors: dict[str, list[float]] = field(default_factory=dict)
    title: str = ""
    x_label: str = ""
    note: str = ""
    empty_text: str = "nothing to show"


@dataclass
class Heatmap:
    """A matrix with counts in the cells (the confusion matrix: rows true, columns predicted)."""

    z: list[list[float]]
    x: list[str]
    y: list[str]
    title: str = ""
    x_label: str = "predicted"
    y_label: str = "true"


@dataclass
class Parallel:
    """Parallel coordinates: one axis per parameter, one line per run, coloured by ``colour_values``."""

    dimensions: list[tuple[str, list[Any]]]
    colour_values: list[float]
    colour_label: str = "score"
    title: str = ""
    note: str = ""


Chart = LineChart | BarChart | Heatmap | Parallel


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def robust_range(values: Sequence[float], log_y: bool = False) -> tuple[tuple[float, float] | None, int]:
    """A y range that ignores spikes, and how many points it leaves out.

    When the largest value sits far above the bulk (more than twice the 5–95 % spread above the
    95th percentile, e.g. one run's loss of 50 among losses near 1), the range is cut at the bulk;
    otherwise ``None`` (autorange). Log axes need no cut.
    """
    import numpy as np

    v = np.asarray([x for x in values if _finite(x)], dtype=float)
    if log_y or len(v) < 8:
        return None, 0
    lo, hi = np.quantile(v, [0.05, 0.95])
    span = hi - lo
    if span <= 0 or v.max() <= hi + 2 * span:
        return None, 0
    top = hi + 0.3 * span
    bottom = min(float(v.min()), lo - 0.05 * span)
    return (float(bottom), float(top)), int((v > top).sum())


def clip_spikes(chart: LineChart) -> LineChart:
    """Set ``chart.y_range`` and a note when a spike would flatten the other curves."""
    rng, hidden = robust_range(chart.values(), chart.log_y)
    chart.y_range = rng
    if hidden:
        chart.note = (f"{hidden} point(s) above the range are cut off (double-click the plot or switch to log "
                      "to see all)")
    return chart


# -- plotly ---------------------------------------------------------------------------------
def _line_traces(chart: LineChart) -> list[dict]:
    traces = []
    for s in chart.series:
        mode = "markers" if s.only_markers else "lines+markers" if s.show_markers() else "lines"
        t = {"type": "scatter", "name": s.name, "x": list(s.x), "y": list(s.y), "mode": mode,
             "legendgroup": s.name if not s.faint else None, "showlegend": s.legend and not s.faint,
             "line": {"color": colour(s.group), "width": 1 if s.faint else 2, "dash": "dash" if s.dash else "solid",
                      "shape": "hv" if s.step else "linear"},
             "marker": {"size": 11, "symbol": "x", "line": {"width": 1, "color": "#222"}} if s.only_markers
             else {"size": 6}, "opacity": 0.3 if s.faint else 1.0,
             "hoverinfo": "skip" if s.faint else None,
             "hovertemplate": None if s.faint else
             f"<b>%{{fullData.name}}</b><br>{chart.x_label} %{{x}}<br>%{{y:.4g}}%{{text}}<extra></extra>",
             "text": [f"<br>{h}" for h in s.hover] if s.hover else [""] * len(s.x)}
        traces.append(t)
    for m in chart.markers:
        traces.append({"type": "scatter", "name": m.name, "x": [m.x], "y": [m.y], "mode": "markers",
                       "marker": {"symbol": m.symbol, "size": 12, "color": colour(m.group),
                                  "line": {"width": 2, "color": "#222"}},
                       "showlegend": True, "text": [m.text],
                       "hovertemplate": "<b>%{fullData.name}</b><br>" + chart.x_label + " %{x}<br>%{text}<extra></extra>"})
    return traces


def _log_buttons(log_y: bool) -> list[dict]:
    return [{"type": "buttons", "direction": "left", "x": 1.0, "xanchor": "right", "y": 1.12, "yanchor": "bottom",
             "showactive": True, "active": 1 if log_y else 0, "pad": {"r": 2, "t": 2},
             "buttons": [{"label": "linear", "method": "relayout", "args": [{"yaxis.type": "linear",
                                                                             "yaxis.autorange": True}]},
                         {"label": "log", "method": "relayout", "args": [{"yaxis.type": "log",
                                                                          "yaxis.autorange": True}]}]}]


def _layout(title: str, note: str, **extra: Any) -> dict:
    text = title + (f"<br><sup>{note}</sup>" if note else "")
    return {"title": {"text": text, "font": {"size": 14}, "x": 0.01, "xanchor": "left"},
            "margin": {"l": 60, "r": 20, "t": 70 if note else 50, "b": 50}, "height": 360,
            "template": "plotly_white", "legend": {"font": {"size": 10}}, **extra}


def figure_dict(chart: Chart, log_switch: bool | None = None) -> dict:
    """The chart as a plotly figure dict (``{"data": [...], "layout": {...}}``)."""
    if isinstance(chart, LineChart):
        data = _line_traces(chart)
        yaxis: dict[str, Any] = {"title": {"text": chart.y_label}, "type": "log" if chart.log_y else "linear"}
        if chart.y_range is not None and not chart.log_y:
            yaxis.update(range=list(chart.y_range), autorange=False)
        else:
            yaxis.update(range=None, autorange=True)
        layout = _layout(chart.title, chart.note, xaxis={"title": {"text": chart.x_label}}, yaxis=yaxis,
                         hovermode="closest")
        if (chart.log_switch if log_switch is None else log_switch) and data:
            layout["updatemenus"] = _log_buttons(chart.log_y)
        if not data:
            layout["annotations"] = [_empty(chart.empty_text)]
        return {"data": data, "layout": layout}
    if isinstance(chart, BarChart):
        data = [{"type": "bar", "orientation": "h", "name": g, "y": list(chart.labels), "x": list(v),
                 "marker": {"color": colour(i)},
                 "error_x": {"type": "data", "array": list(chart.errors[g])} if g in chart.errors else None,
                 "hovertemplate": "%{y}: %{x:.3f}<extra>" + g + "</extra>"}
                for i, (g, v) in enumerate(chart.groups.items())]
        layout = _layout(chart.title, chart.note, barmode="group", xaxis={"title": {"text": chart.x_label}},
                         yaxis={"autorange": "reversed"}, height=max(220, 60 + 34 * len(chart.labels) * max(1, len(data))))
        if not chart.labels:
            layout["annotations"] = [_empty(chart.empty_text)]
        return {"data": data, "layout": layout}
    if isinstance(chart, Heatmap):
        data = [{"type": "heatmap", "z": chart.z, "x": list(chart.x), "y": list(chart.y), "colorscale": "Blues",
                 "showscale": False, "text": chart.z, "texttemplate": "%{text}",
                 "hovertemplate": "true %{y}<br>predicted %{x}<br>%{z} images<extra></extra>"}]
        n = max(len(chart.x), 1)
        layout = _layout(chart.title, "", xaxis={"title": {"text": chart.x_label}, "side": "bottom"},
                         yaxis={"title": {"text": chart.y_label}, "autorange": "reversed"},
                         height=min(520, 160 + 34 * n), width=min(620, 200 + 40 * n))
        return {"data": data, "layout": layout}
    dims = []
    for label, vals in chart.dimensions:
        if all(_finite(v) for v in vals):
            dims.append({"label": label, "values": [float(v) for v in vals]})
        else:  # categorical: one tick per value
            cats = sorted({str(v) for v in vals})
            dims.append({"label": label, "values": [cats.index(str(v)) for v in vals],
                         "tickvals": list(range(len(cats))), "ticktext": cats})
    data = [{"type": "parcoords", "dimensions": dims,
             "line": {"color": list(chart.colour_values), "colorscale": "Viridis", "showscale": True,
                      "colorbar": {"title": {"text": chart.colour_label}}}}]
    return {"data": data, "layout": _layout(chart.title, chart.note, margin={"l": 80, "r": 80, "t": 90, "b": 30})}


def _empty(text: str) -> dict:
    return {"text": text, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5, "showarrow": False,
            "font": {"size": 14, "color": "#888"}}


def to_plotly(chart: Chart, fig: Any = None) -> Any:
    """A ``go.Figure`` of the chart, or ``fig`` (e.g. a live ``go.FigureWidget``) updated in place.

    In place means one batched message: traces are replaced, the layout is updated, and the
    y-axis type a user chose in the page (log/linear buttons) is kept.
    """
    import plotly.graph_objects as go

    d = figure_dict(chart)
    if fig is None:
        return go.Figure(d)
    layout = d["layout"]
    if isinstance(chart, LineChart) and fig.layout.updatemenus and layout.get("updatemenus"):
        # the page owns the linear/log switch: keep what the user picked there
        del layout["updatemenus"]
        yaxis = layout["yaxis"]
        yaxis.pop("type", None)
        if fig.layout.yaxis.type == "log":
            yaxis.update(range=None, autorange=True)
    with fig.batch_update():
        fig.layout.annotations = ()
        fig.update_layout(layout, overwrite=False)
        if len(fig.data) == len(d["data"]) and all(t.type == n["type"] for t, n in zip(fig.data, d["data"])):
            for t, n in zip(fig.data, d["data"]):
                t.update({k: v for k, v in n.items() if k != "type"}, overwrite=True)
        else:
            fig.data = ()
            if d["data"]:
                fig.add_traces(d["data"])
    return fig


# -- matplotlib -----------------------------------------------------------------------------
def draw(chart: Chart, ax: Any) -> Any:
    """Draw the chart on a matplotlib Axes (static rendering for the tour, the CLI and HTML)."""
    import numpy as np

    if isinstance(chart, LineChart):
        for s in chart.series:
            kw = {"color": colour(s.group), "lw": 0.8 if s.faint else 1.6, "alpha": 0.3 if s.faint else 1.0,
                  "ls": "--" if s.dash else "-", "label": s.name if s.legend and not s.faint else None}
            if s.only_markers:
                kw.update(ls="none", marker="x", ms=8, mew=2)
            elif s.show_markers():
                kw.update(marker="o", ms=3)
            (ax.step if s.step else ax.plot)(s.x, s.y, **({**kw, "where": "post"} if s.step else kw))
        for m in chart.markers:
            ax.plot([m.x], [m.y], marker=m.symbol if m.symbol in ("x", "o", "s", "^", "v", "D") else "x", ms=9,
                    mew=2, ls="none", color=colour(m.group), label=m.name)
        ax.set_xlabel(chart.x_label)
        ax.set_ylabel(chart.y_label)
        if chart.log_y:
            ax.set_yscale("log")
        elif chart.y_range is not None:
            ax.set_ylim(*chart.y_range)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
        if not chart.series:
            ax.text(0.5, 0.5, chart.empty_text, ha="center", va="center", transform=ax.transAxes, color="#888")
    elif isinstance(chart, BarChart):
        n = max(len(chart.groups), 1)
        h = 0.8 / n
        ypos = np.arange(len(chart.labels))
        for i, (g, vals) in enumerate(chart.groups.items()):
            ax.barh(ypos + i * h, vals, height=h, xerr=chart.errors.get(g), color=colour(i), label=g)
        ax.set_yticks(ypos + h * (n - 1) / 2, chart.labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(chart.x_label)
        if len(chart.groups) > 1:
            ax.legend(fontsize=7)
    elif isinstance(chart, Heatmap):
        m = np.asarray(chart.z)
        ax.imshow(m, cmap="Blues")
        ax.set_xticks(range(len(chart.x)), chart.x, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(chart.y)), chart.y, fontsize=7)
        ax.set_xlabel(chart.x_label)
        ax.set_ylabel(chart.y_label)
        hi = m.max() if m.size else 0
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=7, color="white" if v > hi / 2 else "black")
    else:
        _draw_parallel(chart, ax)
    title = chart.title + (f"\n{chart.note}" if getattr(chart, "note", "") else "")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def _draw_parallel(chart: Parallel, ax: Any) -> None:
    import numpy as np
    from matplotlib import colormaps

    cols, ticks = [], []
    for _label, vals in chart.dimensions:
        if all(_finite(v) for v in vals):
            a = np.asarray(vals, dtype=float)
            lo, hi = (float(a.min()), float(a.max())) if len(a) else (0.0, 0.0)
            labels = [(0.0, f"{lo:.3g}"), (1.0, f"{hi:.3g}")] if hi > lo else [(0.5, f"{lo:.3g}")]
        else:
            cats = sorted({str(v) for v in vals})
            a = np.asarray([cats.index(str(v)) for v in vals], dtype=float)
            labels = [(i / (len(cats) - 1) if len(cats) > 1 else 0.5, c) for i, c in enumerate(cats)]
        span = a.max() - a.min() if len(a) else 0
        cols.append((a - a.min()) / span if span else np.full(len(a), 0.5))
        ticks.append(labels)
    c = np.asarray(chart.colour_values, dtype=float)
    cn = (c - np.nanmin(c)) / (np.nanmax(c) - np.nanmin(c)) if len(c) and np.nanmax(c) > np.nanmin(c) else c * 0
    cmap = colormaps["viridis"]
    xs = range(len(cols))
    for i in np.argsort(c):  # the best lines drawn last, on top
        ax.plot(xs, [col[i] for col in cols], color=cmap(float(cn[i])), alpha=0.75, lw=1.2)
    ax.set_xticks(list(xs), [d[0] for d in chart.dimensions], rotation=15, ha="right", fontsize=7)
    ax.set_yticks([])
    ax.set_ylim(-0.08, 1.08)
    for x, labels in zip(xs, ticks):
        ax.axvline(x, color="#444", lw=0.8)
        for y, text in labels:
            ax.text(x + 0.03, y, text, fontsize=6.5, va="center", ha="left", color="#222",
                    bbox={"facecolor": "white", "alpha": 0.7, "pad": 1, "lw": 0})


def png(chart: Chart, size: tuple[float, float] | None = None, dpi: int = 90) -> bytes:
    """The chart as PNG bytes (a fresh Agg figure: no pyplot, safe from any thread)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if size is None:
        size = _default_size(chart)
    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    draw(chart, fig.add_subplot(111))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _default_size(chart: Chart) -> tuple[float, float]:
    if isinstance(chart, BarChart):
        return 6.5, max(2.2, 0.35 * len(chart.labels) * max(1, len(chart.groups)) + 1.4)
    if isinstance(chart, Heatmap):
        n = len(chart.x)
        return min(7.0, 2.4 + 0.45 * n), min(6.5, 2.2 + 0.4 * n)
    return 7.5, 3.6


def mimebundle(chart: Chart) -> dict[str, Any]:
    """What a notebook stores for the chart: the plotly figure (JupyterLab draws it) and a PNG
    (nbconvert's HTML and any viewer without plotly show that)."""
    import plotly.io as pio
    import plotly.graph_objects as go

    fig = json.loads(pio.to_json(go.Figure(figure_dict(chart)), validate=False))
    fig["config"] = {"displaylogo": False}
    # The PNG goes in as HTML, not image/png: JupyterLab's plotly renderer shows a bundle's
    # image/png *instead of* the figure when the output is off screen as it renders (Run All in
    # a long notebook), and never swaps it back.
    img = base64.b64encode(png(chart)).decode("ascii")
    title = html.escape(getattr(chart, "title", "") or type(chart).__name__)
    return {"application/vnd.plotly.v1+json": fig,
            "text/html": f'<img alt="{title}" src="data:image/png;base64,{img}"/>',
            "text/plain": f"<{type(chart).__name__}: {getattr(chart, 'title', '')}>"}


class Shown:
    """A chart that displays itself (interactive in JupyterLab, PNG elsewhere)."""

    def __init__(self, chart: Chart) -> None:
        self.chart = chart

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return mimebundle(self.chart)

    def png(self, **kw: Any) -> bytes:
        """The static rendering (see :func:`png`)."""
        return png(self.chart, **kw)

    def figure(self) -> Any:
        """The interactive rendering (a ``go.Figure``)."""
        return to_plotly(self.chart)
