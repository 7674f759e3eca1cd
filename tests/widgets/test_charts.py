"""Charts: one description, drawn interactively (plotly) and statically (matplotlib PNG)."""
from __future__ import annotations

import base64
import json

import pytest

from workbench.widgets import charts, plots
from workbench.widgets.views import ChartView, CurvesView


def _rec(rid: str, name: str, losses: list[float], **extra) -> dict:
    return {"id": rid, "name": name, "metrics": [{"step": i, "train_loss": v} for i, v in enumerate(losses)], **extra}


def test_a_spiking_run_does_not_flatten_the_others():
    calm = [_rec(f"r{i}", f"calm-{i}", [1.0 / (s + 1) + 0.01 * i for s in range(40)]) for i in range(3)]
    spiky = _rec("s", "spiky", [1.0 / (s + 1) if s != 5 else 50.0 for s in range(40)])
    chart = plots.curves_chart(calm + [spiky], "train_loss")
    assert chart.y_range is not None and chart.y_range[1] < 5, chart.y_range  # the bulk, not the spike
    assert "cut off" in chart.note and "log" in chart.note                    # and it says so
    assert plots.curves_chart(calm, "train_loss").y_range is None             # no spike: autorange
    assert plots.curves_chart(calm + [spiky], "train_loss", log_y=True).y_range is None  # a log axis shows all
    fig = charts.figure_dict(chart)
    assert fig["layout"]["yaxis"]["range"] == list(chart.y_range)


def test_legends_use_run_names_and_a_single_point_stays_visible():
    recs = [_rec("20260101-aaaaaa", "adam", [2.0, 1.0, 0.5]),
            {"id": "20260101-bbbbbb", "name": "one-val", "metrics": [{"step": 3, "val_loss": 0.7}]}]
    fig = charts.figure_dict(plots.curves_chart(recs, ["train_loss", "val_loss"]))
    names = [t["name"] for t in fig["data"]]
    assert names == ["adam · train_loss", "one-val · val_loss"], names   # names, not id tails
    single = fig["data"][1]
    assert single["mode"] == "lines+markers" and single["line"]["dash"] == "dash"  # one point: a marker


def test_a_run_stopped_early_is_marked_where_it_stopped():
    bad = _rec("b", "lr-typo", [2.0, 2.5, 4.0, 9.0, 30.0], gone_bad={"call": "diverged", "step": 3, "reason": "loss 9"})
    chart = plots.curves_chart([bad], "train_loss")
    assert [(m.x, m.y, m.name) for m in chart.markers] == [(3, 9.0, "lr-typo stopped")]
    assert "diverged: loss 9" in chart.markers[0].text
    rows = [{"name": "t0", "curve": [0.2, 0.4, 0.6], "pruned": False}, {"name": "t1", "curve": [0.1, 0.12], "pruned": True}]
    stops = [s for s in plots.trial_curves_chart(rows).series if s.only_markers]
    assert len(stops) == 1 and stops[0].x == [2.0] and stops[0].y == [0.12]


def test_a_chart_displays_as_plotly_with_a_png_for_exported_pages():
    shown = plots.curves([_rec("a", "adam", [1.0, 0.5, 0.25])], "train_loss")
    bundle = shown._repr_mimebundle_()
    fig = bundle["application/vnd.plotly.v1+json"]
    assert fig["data"][0]["name"] == "adam" and json.dumps(fig)  # plain JSON
    # the PNG rides as HTML (JupyterLab's plotly renderer would show an image/png instead of the figure)
    assert "image/png" not in bundle and bundle["text/html"].startswith('<img alt="train_loss"')
    png = base64.b64decode(bundle["text/html"].split("base64,")[1].rstrip('"/>'))
    assert png[:4] == b"\x89PNG" and shown.png()[:4] == b"\x89PNG"
    menus = fig["layout"]["updatemenus"][0]["buttons"]
    assert [b["label"] for b in menus] == ["linear", "log"]  # the figure's own log switch, no kernel needed


@pytest.mark.parametrize("chart", [
    charts.BarChart(["lr", "batch"], {"ours": [0.7, 0.3], "fANOVA": [0.6, 0.4]}, {"ours": [0.1, 0.05]}),
    charts.Heatmap([[3.0, 1.0], [0.0, 4.0]], ["a", "b"], ["a", "b"]),
    charts.Parallel([("lr", [0.001, 0.01, 0.1]), ("aug", ["none", "flip", "none"])], [0.5, 0.8, 0.2]),
    plots.anytime_chart({"with memory": ([12, 24], [0.6, 0.9]), "without": ([12, 24, 36], [0.2, 0.5, 0.9])},
                        target=0.89),
])
def test_every_chart_has_both_renderings(chart):
    assert charts.png(chart)[:4] == b"\x89PNG"
    fig = charts.to_plotly(chart)
    assert len(fig.data) >= 1


def test_views_update_in_place_and_keep_the_users_scale():
    view = CurvesView()
    view.set_runs([_rec("a", "adam", [1.0, 0.5, 0.25]), _rec("b", "sgd", [1.0, 0.8, 0.7])])
    fig = view.view.figure
    assert [t.name for t in fig.data] == ["adam", "sgd"] and fig.layout.yaxis.type == "linear"
    view.y_scale.value = "log"
    assert fig.layout.yaxis.type == "log"
    view.set_runs([_rec("a", "adam", [1.0, 0.5, 0.25, 0.2])])  # a live update: same figure, new data
    assert view.view.figure is fig and len(fig.data[0].y) == 4 and fig.layout.yaxis.type == "log"
    hidden = ChartView(hidden=True)
    assert hidden.figure is None and hidden.widget.layout.display == "none"  # no figure laid out while hidden
    hidden.show(charts.Heatmap([[1.0]], ["a"], ["a"]))
    assert hidden.figure.data[0].type == "heatmap" and hidden.widget.layout.display == ""
