"""The runs panel: a filterable table of runs; select one for a readable detail view (config and
summary as tables, curves, confusion matrix, or a scrape run's thumbnails), or several to overlay
their curves.

Thin wiring over :class:`workbench.runlog.RunLog`, :mod:`workbench.records` and
:mod:`workbench.widgets.views`.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import ipywidgets as W

from ..meta.common import flatten
from ..provenance import lineage_text, lr_find_text, resume_text
from ..runlog.records import RunRecord
from ..runlog import STATUSES
from . import plots
from .common import heading
from .train import summary_table
from .views import ChartView, CurvesView

ALL = "(all)"


def _result(rec: dict) -> str:
    score = RunRecord.from_dict(rec).score()
    return "" if score is None else str(score)


def command_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flattened defaults of a command of the record's kind (``{}`` when it is not a training command)."""
    from ..commands import parse

    try:
        return flatten(parse({"kind": config.get("kind", "baseline")}).to_dict())
    except (ValueError, TypeError):
        return {}


def config_table(config: Mapping[str, Any]) -> str:
    """The config as a key/value table: keys that differ from the command's defaults first, the
    defaults folded away in a ``<details>`` block."""
    flat = flatten(config)
    defaults = command_defaults(config)
    changed = {k: v for k, v in flat.items() if k not in defaults or defaults[k] != v}
    same = {k: v for k, v in flat.items() if k not in changed}

    def rows(d: Mapping[str, Any]) -> str:
        return "".join(f"<tr><td style='padding:1px 10px 1px 0;vertical-align:top'><code>{html.escape(k)}</code></td>"
                       f"<td style='word-break:break-word'>{html.escape(json.dumps(v, default=str))}</td></tr>"
                       for k, v in d.items())
    head = "<b>Config</b>" + (" (keys set differently from the defaults)" if defaults else "")
    out = f"{head}<table style='font-size:0.9em;table-layout:fixed;max-width:100%'>{rows(changed)}</table>"
    if same:
        out += (f"<details><summary>{len(same)} keys at their default</summary>"
                f"<table style='font-size:0.9em'>{rows(same)}</table></details>")
    return out


def set_options(select: Any, options: list, value: tuple) -> None:
    """New options for a multiple-select, keeping ``value``: the selection is emptied first, so the
    page never holds an index into options that are gone (that was the front end's "Error setting
    state … (setting 'selected')" when a filter matched nothing)."""
    if select.value:
        select.value = ()
    if list(select.options) != options:
        select.options = options
    if value:
        select.value = value


def scrape_root(rec: Mapping[str, Any]) -> Path | None:
    """The folder of a scraped dataset the record points at (one with a ``manifest.jsonl``)."""
    root = RunRecord.from_dict(rec).data_root or (rec.get("config") or {}).get("out")
    if isinstance(root, str) and root and (Path(root).expanduser() / "manifest.jsonl").is_file():
        return Path(root).expanduser()
    return None


def preview_png(root: Path) -> bytes:
    """A thumbnail grid of a scraped dataset as PNG bytes."""
    import io

    from ..scrape import preview

    fig = preview(root, per_label=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


class RunsPanel:
    """Filter runs by status, kind and name; inspect one run or compare several.

    Attributes tests and users drive: ``status_filter``, ``kind_filter``, ``name_filter``
    (values), ``selector`` (``.value`` = tuple of run ids), ``refresh_button``; outputs ``table``,
    ``details`` (HTML), ``curves`` (:class:`CurvesView`), ``confusion`` (:class:`ChartView`),
    ``preview`` (an Image, shown for scrape runs only).
    """

    def __init__(self, log: Any = None) -> None:
        from ..runlog import RunLog

        self.log = log or RunLog()
        self.status_filter = W.Dropdown(options=[ALL, *STATUSES], value=ALL, description="Status")
        self.kind_filter = W.Dropdown(options=[ALL], value=ALL, description="Kind")
        self.name_filter = W.Text(description="Name", placeholder="part of a run name")
        self.refresh_button = W.Button(description="Refresh", icon="refresh", tooltip="Re-read the run log")
        self.table = W.HTML()
        self.selector = W.SelectMultiple(options=[], rows=8, description="Runs", layout=W.Layout(width="100%"))
        self.details = W.HTML()
        self.curves = CurvesView(height=320)
        self.curves.widget.layout.display = "none"
        self.confusion = ChartView(height=300, hidden=True)
        self.preview = W.Image(format="png", layout=W.Layout(max_width="760px", display="none"))
        for w in (self.status_filter, self.kind_filter, self.name_filter):
            w.observe(lambda _: self.refresh(), names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.selector.observe(lambda _: self.show(), names="value")
        self.widget = W.VBox([
            heading("Runs", "every run in the run log: filter, select one to inspect, several to compare"),
            W.HBox([self.status_filter, self.kind_filter, self.name_filter, self.refresh_button]),
            self.table, W.HTML("<b>Select runs</b> (ctrl/shift-click for several):"), self.selector,
            self.details, self.curves.widget, self.preview, self.confusion.widget,
        ])
        self.records: list[dict] = []
        self.refresh()

    def refresh(self) -> list[dict]:
        """Re-read the run log and apply the filters; returns the shown records."""
        recs = self.log.runs()
        kinds = sorted({r.get("kind", "") for r in recs})
        if list(self.kind_filter.options) != [ALL, *kinds]:
            keep = self.kind_filter.value if self.kind_filter.value in kinds else ALL
            self.kind_filter.options = [ALL, *kinds]
            self.kind_filter.value = keep
        st, kind, name = self.status_filter.value, self.kind_filter.value, self.name_filter.value.strip()
        recs = [r for r in recs if (st == ALL or r.get("status") == st) and (kind == ALL or r.get("kind") == kind)
                and (not name or name.lower() in str(r.get("name", "")).lower())]
        self.records = recs
        rows = "".join(
            f"<tr><td>{html.escape(str(r.get('name', '')))}</td><td><code>{html.escape(r['id'])}</code></td>"
            f"<td>{html.escape(str(r.get('kind', '')))}</td><td>{html.escape(str(r.get('status', '')))}</td>"
            f"<td>{html.escape(_result(r))}</td></tr>" for r in reversed(recs))
        self.table.value = ("<table style='font-size:0.9em'><tr><th>name</th><th>id</th><th>kind</th><th>status</th>"
                            f"<th>result</th></tr>{rows}</table>" if recs else "<i>no runs match</i>")
        ids = {r["id"] for r in recs}
        selected = tuple(v for v in self.selector.value if v in ids)
        set_options(self.selector, [(f"{r.get('name')} · {r['id']} · {r.get('status')}", r["id"]) for r in reversed(recs)],
                    selected)
        if not selected:
            self.show()
        return recs

    def select(self, run_ids: Sequence[str]) -> None:
        """Select runs by id (same as clicking them in the list)."""
        self.selector.value = tuple(run_ids)

    def show(self) -> None:
        """Show the selection: one run → its detail view; several → overlaid curves; none → clear."""
        ids = list(self.selector.value)
        self.confusion.clear(hide=True)
        self.preview.value, self.preview.layout.display = b"", "none"
        if not ids:
            self.details.value = "<i>select a run above to see its details</i>"
            self.curves.records = []
            self.curves.widget.layout.display = "none"
            return
        recs = [self.log.get(i) for i in ids]
        logged = any(r.get("metrics") or r.get("epochs") for r in recs)
        root = scrape_root(recs[0]) if len(recs) == 1 and not logged else None
        if root is not None:  # a scrape run: its thumbnails, not an empty loss plot
            self.curves.widget.layout.display = "none"
            self.preview.value, self.preview.layout.display = preview_png(root), ""
        elif logged:
            self.curves.widget.layout.display = ""
            self.curves.set_runs(recs)
        else:
            self.curves.widget.layout.display = "none"
        if len(recs) == 1:
            self.details.value = detail_html(recs[0])
            chart = plots.confusion_chart(recs[0])
            if chart is not None:
                self.confusion.show(chart)
        else:
            self.details.value = ("<b>Selected runs</b><table style='font-size:0.9em'>" + "".join(
                f"<tr><td>{html.escape(str(r.get('name')))}</td><td><code>{html.escape(r['id'])}</code></td>"
                f"<td>{html.escape(str(r.get('status')))}</td><td>{html.escape(_result(r))}</td>"
                + (f"<td style='color:#b00'>{html.escape(str(r['error']))}</td>" if r.get("error") else "")
                + "</tr>" for r in recs) + "</table>")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def detail_html(rec: Mapping[str, Any]) -> str:
    """One run as a person reads it: a header line, the summary table, the config table, the dataset."""
    v = RunRecord.from_dict(rec)
    head = (f"<div style='font-size:1.05em'><b>{html.escape(v.name)}</b> <code>{html.escape(v.id)}</code> · "
            f"{html.escape(v.kind)} · <b>{html.escape(v.status)}</b>"
            + (f" · score {html.escape(_result(dict(rec)))}" if _result(dict(rec)) else "") + "</div>")
    err = f"<div style='color:#b00'>error: {html.escape(str(v.error))}</div>" if v.error else ""
    # where the run came from: initialised from, resumed from, learning rate found (workbench.provenance)
    err += "".join(f"<div class='wb-lineage'>{html.escape(t)}</div>"
                   for t in (lineage_text(rec), resume_text(rec), lr_find_text(rec)) if t)
    summary = {k: x for k, x in v.summary.items() if k != "confusion_matrix"}
    parts = [head, err]
    if summary:
        parts.append("<b>Summary</b>" + summary_table(summary))
    parts.append(config_table(v.config))
    ds = rec.get("dataset") or {}
    if ds:
        keep = {k: ds[k] for k in ("root", "n_images", "classes", "sha256", "dup_groups") if k in ds}
        parts.append("<details><summary>Dataset</summary>" + summary_table(
            {k: (", ".join(map(str, x)) if isinstance(x, list) else json.dumps(x) if isinstance(x, dict) else x)
             for k, x in keep.items()}) + "</details>")
    if rec.get("tags"):
        parts.append("tags: " + ", ".join(f"<code>{html.escape(t)}</code>" for t in rec["tags"]))
    return "".join(parts)


def runs_panel(log: Any = None) -> RunsPanel:
    """Build a :class:`RunsPanel` (display it as the cell's last expression)."""
    return RunsPanel(log)
