"""The runs panel: a filterable table of runs; select one for its config, curves and
confusion matrix, or several to overlay their loss curves.

Thin wiring over :class:`workbench.runlog.RunLog` and :mod:`workbench.widgets.plots`.
"""
from __future__ import annotations

import html
import json
from typing import Any, Sequence

import ipywidgets as W

from ..provenance import lineage_text, lr_find_text, resume_text
from ..runlog.records import RunRecord
from ..runlog import STATUSES
from . import plots

ALL = "(all)"


def _result(rec: dict) -> str:
    score = RunRecord.from_dict(rec).score()
    return "" if score is None else str(score)


class RunsPanel:
    """Filter runs by status, kind and name; inspect one run or compare several.

    Attributes tests and users drive: ``status_filter``, ``kind_filter``, ``name_filter``
    (values), ``selector`` (``.value`` = tuple of run ids), ``refresh_button``.
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
        self.curves = W.Image(format="png", layout=W.Layout(width="420px"))
        self.confusion = W.Image(format="png", layout=W.Layout(width="300px"))
        for w in (self.status_filter, self.kind_filter, self.name_filter):
            w.observe(lambda _: self.refresh(), names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.selector.observe(lambda _: self.show(), names="value")
        self.widget = W.VBox([
            W.HBox([self.status_filter, self.kind_filter, self.name_filter, self.refresh_button]),
            self.table, self.selector, W.HBox([self.curves, self.confusion]), self.details,
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
            f"<tr><td>{html.escape(r['id'])}</td><td>{html.escape(str(r.get('name', '')))}</td>"
            f"<td>{html.escape(str(r.get('kind', '')))}</td><td>{html.escape(str(r.get('status', '')))}</td>"
            f"<td>{html.escape(_result(r))}</td></tr>" for r in reversed(recs))
        self.table.value = ("<table><tr><th>id</th><th>name</th><th>kind</th><th>status</th><th>result</th></tr>"
                            f"{rows}</table>" if recs else "<i>no runs match</i>")
        selected = tuple(v for v in self.selector.value if v in {r["id"] for r in recs})
        self.selector.options = [(f"{r.get('name')} · {r['id']} · {r.get('status')}", r["id"]) for r in reversed(recs)]
        self.selector.value = selected
        return recs

    def select(self, run_ids: Sequence[str]) -> None:
        """Select runs by id (same as clicking them in the list)."""
        self.selector.value = tuple(run_ids)

    def show(self) -> None:
        """Show the selection: one run → config, curves, confusion matrix; several → overlaid curves."""
        ids = list(self.selector.value)
        if not ids:
            self.details.value = ""
            _show_png(self.curves, b"")
            _show_png(self.confusion, b"")
            return
        recs = [self.log.get(i) for i in ids]
        _show_png(self.curves, plots.loss_png({f"{r.get('name')} ({r['id'][-6:]})": r.get("metrics") or [] for r in recs},
                                           title="loss" if len(recs) == 1 else f"{len(recs)} runs compared"))
        if len(recs) == 1:
            r = recs[0]
            s = r.get("summary") or {}
            if s.get("confusion_matrix") and s.get("classes"):
                _show_png(self.confusion, plots.confusion_png(s["confusion_matrix"], s["classes"],
                                                              title=f"test accuracy {s.get('test_accuracy', 0):.3f}"))
            else:
                _show_png(self.confusion, b"")
            short = {k: v for k, v in s.items() if k not in ("confusion_matrix",)}
            self.details.value = (f"<b>{html.escape(str(r.get('name')))}</b> {html.escape(r['id'])} —"
                                  f" {html.escape(str(r.get('status')))}"
                                  + (f" <span style='color:#b00'>{html.escape(str(r['error']))}</span>"
                                     if r.get("error") else "")
                                  + "".join(f"<div class='wb-lineage'>{html.escape(t)}</div>"
                                            for t in (lineage_text(r), resume_text(r), lr_find_text(r)) if t)
                                  + f"<pre>config: {html.escape(json.dumps(r.get('config'), indent=1))}</pre>"
                                  f"<pre>summary: {html.escape(json.dumps(short, indent=1, default=str))}</pre>")
        else:
            _show_png(self.confusion, b"")
            self.details.value = "<br>".join(f"{html.escape(str(r.get('name')))} {html.escape(r['id'])}:"
                                             f" {html.escape(_result(r))}" for r in recs)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def runs_panel(log: Any = None) -> RunsPanel:
    """Build a :class:`RunsPanel` (display it as the cell's last expression)."""
    return RunsPanel(log)


def _show_png(image: W.Image, png: bytes) -> None:
    """Set an image and hide it when empty (an empty PNG renders as a broken-image icon)."""
    image.value = png
    image.layout.display = "" if png else "none"
