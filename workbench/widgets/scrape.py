"""The scrape panel: queries in, a dataset out, progress live (a shell around ``workbench.scrape``).

All work happens in :func:`workbench.scrape.scrape` on a background thread; the
thread only assigns widget ``.value``s (ipykernel 7 routes a thread's *printed*
output elsewhere, while widget state syncs from any thread), so bars move while
the kernel stays free. **Plan** shows the searches a build would spend (a dry run);
after a build, the queries' related searches are offered as **related labels** to add.
Tests drive it with ``panel.start.click()`` and ``panel.wait()``.
"""
from __future__ import annotations

import html
import io
import threading
from pathlib import Path
from typing import Any

import ipywidgets as W

from .. import paths
from .common import heading


def parse_queries(text: str) -> tuple[list[str], list[str]]:
    """One query per line; ``label: query`` gives a display label. Returns (queries, labels)."""
    queries, labels = [], []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if ": " in line:
            label, query = (s.strip() for s in line.split(": ", 1))
        else:
            label = query = line
        if not query:
            raise ValueError(f"queries: line {raw!r} has a label but no query")
        queries.append(query)
        labels.append(label or query)
    if not queries:
        raise ValueError("queries: enter at least one query (one per line, optionally 'label: query')")
    return queries, labels


def add_labels(text: str, labels: list[str]) -> str:
    """``text`` (one query per line) with ``labels`` appended, skipping ones already there."""
    have = {q.casefold() for q in parse_queries(text)[0]} if text.strip() else set()
    lines = [text.rstrip("\n")] if text.strip() else []
    lines += [lab for lab in labels if lab.strip() and lab.casefold() not in have]
    return "\n".join(lines) + ("\n" if lines else "")


class ScrapePanel:
    """Queries/labels, pages, limit, image size, chips, Start; a bar per label and overall.

    Args:
        out: dataset folder (default ``datasets_dir()/"scraped"``).
        queries: initial text of the queries box.
        **scrape_kwargs: passed to :func:`workbench.scrape.scrape` (``api_key``, ``base_url``,
            ``runlog``, ``workers``, ``resize`` …).
    """

    def __init__(self, out: str | Path | None = None, *, queries: str = "", pages: int = 1, limit: int | None = None,
                 size: str = "", chips: str = "", **scrape_kwargs: Any) -> None:
        self.scrape_kwargs = scrape_kwargs
        style = {"description_width": "110px"}
        self.queries = W.Textarea(value=queries, description="Queries", style=style,
                                  placeholder="one per line, optionally 'label: query'\nred fox\narctic fox",
                                  layout=W.Layout(width="520px", height="90px"))
        self.out = W.Text(value=str(out or paths.datasets_dir() / "scraped"), description="Dataset folder",
                          style=style, layout=W.Layout(width="520px"))
        self.pages = W.BoundedIntText(value=pages, min=1, max=20, description="Pages (×100)", style=style)
        self.limit = W.BoundedIntText(value=limit or 0, min=0, max=100000, description="Limit / label",
                                      style=style, tooltip="0 = all results")
        self.size = W.Text(value=size, description="Image size", placeholder="WxH, e.g. 640x480", style=style)
        self.chips = W.Text(value=chips, description="Chips name", placeholder="e.g. outline", style=style)
        self.start = W.Button(description="Start", button_style="primary", icon="download")
        self.stop = W.Button(description="Stop", button_style="warning", icon="stop", disabled=True,
                             tooltip="abandon what is in flight, keep what is downloaded (Start again resumes)")
        self.plan = W.Button(description="Plan", icon="list", tooltip="show the searches a build would spend")
        self.related = W.SelectMultiple(options=[], description="Related labels", style=style, rows=4,
                                        layout=W.Layout(width="520px", display="none"))
        self.add_related = W.Button(description="Add to queries", icon="plus", disabled=True,
                                    layout=W.Layout(display="none"))
        self.status = W.HTML(value="")
        self.overall = W.IntProgress(value=0, min=0, max=1, description="Overall", style=style,
                                     layout=W.Layout(width="420px"))
        self.overall_text = W.Label(value="")
        self.bars: dict[str, tuple[W.IntProgress, W.Label]] = {}
        self.bars_box = W.VBox([])
        # hidden until there is a picture: an empty <img> shows as a broken-image icon
        self.preview = W.Image(format="png", layout=W.Layout(max_width="760px", display="none"))
        self.widget = W.VBox([
            heading("Scrape", "labelled images from Google Images (or the offline stub) into a dataset folder"),
            self.queries, self.out, W.HBox([self.pages, self.limit]), W.HBox([self.size, self.chips]),
            W.HBox([self.start, self.stop, self.plan]), self.status, W.HBox([self.overall, self.overall_text]),
            self.bars_box, self.preview, W.HBox([self.related, self.add_related])])
        self.thread: threading.Thread | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._stop_event = threading.Event()
        self._run_limit: int | None = None
        self._ui_lock = threading.Lock()  # progress arrives from several download threads at once
        self.start.on_click(self._on_start)
        self.stop.on_click(self._on_stop)
        self.plan.on_click(self._on_plan)
        self.add_related.on_click(self._on_add_related)
        self.related.observe(lambda ch: setattr(self.add_related, "disabled", not ch["new"]), names="value")

    # -- display ------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # -- running --------------------------------------------------------------------
    def _set_status(self, text: str, error: bool = False) -> None:
        colour = "#b00020" if error else "inherit"
        self.status.value = f'<span style="color:{colour}">{html.escape(text)}</span>'

    def _inputs(self) -> tuple[list[str], list[str]] | None:
        """Queries and labels from the boxes, or None after showing what is wrong."""
        try:
            queries, labels = parse_queries(self.queries.value)
            from ..scrape.client import parse_size

            parse_size(self.size.value.strip() or None)  # fail here, in the UI, not in the thread
        except ValueError as exc:
            self._set_status(str(exc), error=True)
            return None
        return queries, labels

    def _on_plan(self, _btn: Any = None) -> None:
        got = self._inputs()
        if got is None:
            return
        from ..scrape import scrape

        kwargs = {k: v for k, v in self.scrape_kwargs.items() if k not in ("runlog", "progress", "log")}
        try:
            plan = scrape(got[0], self.out.value, labels=got[1], pages=int(self.pages.value),
                          limit=int(self.limit.value) or None, size=self.size.value.strip() or None,
                          chips=self.chips.value.strip() or None, dry_run=True, log=lambda m: None, **kwargs)
        except Exception as exc:  # shown, like a build's error
            self._set_status(f"{type(exc).__name__}: {exc}", error=True)
            return
        self._set_status(plan.summary().splitlines()[0])

    def _on_add_related(self, _btn: Any = None) -> None:
        self.queries.value = add_labels(self.queries.value, list(self.related.value))
        self.related.value = ()

    def _on_start(self, _btn: Any = None) -> None:
        if self.thread is not None and self.thread.is_alive():
            return
        got = self._inputs()
        if got is None:
            return
        queries, labels = got
        self.bars.clear()
        rows = []
        for label in dict.fromkeys(labels):
            bar = W.IntProgress(value=0, min=0, max=1, description=label[:18], layout=W.Layout(width="420px"),
                                style={"description_width": "110px"})
            text = W.Label(value="waiting")
            self.bars[label] = (bar, text)
            rows.append(W.HBox([bar, text]))
        self.bars_box.children = rows
        self.overall.value, self.overall.max, self.overall_text.value = 0, 1, ""
        self.preview.value = b""
        self.preview.layout.display = "none"
        self.result, self.error = None, None
        self._done.clear()
        self._stop_event.clear()
        self.start.disabled, self.stop.disabled = True, False
        self._run_limit = int(self.limit.value) or None  # the bars describe this run, whatever is edited meanwhile
        kwargs = dict(self.scrape_kwargs)
        kwargs.update(labels=labels, pages=int(self.pages.value), limit=self._run_limit,
                      size=self.size.value.strip() or None, chips=self.chips.value.strip() or None,
                      progress=self._on_progress, log=lambda m: self._set_status(m), stop=self._stop_event)
        self.thread = threading.Thread(target=self._run, args=(queries, self.out.value, kwargs),
                                       name="scrape-panel", daemon=True)
        self.thread.start()

    def _run(self, queries: list[str], out: str, kwargs: dict[str, Any]) -> None:
        from ..scrape import scrape

        try:
            self.result = scrape(queries, out, **kwargs)
            self._set_status(self.result.summary().splitlines()[0])
            if self.result.total:
                self.preview.value = self._preview_png()
                self.preview.layout.display = None
            related = self.result.related_labels
            self.related.options = related
            shown = None if related else "none"
            self.related.layout.display = self.add_related.layout.display = shown
        except BaseException as exc:  # shown in the panel; the thread has nobody to raise to
            self.error = exc
            self._set_status(f"{type(exc).__name__}: {exc}", error=True)
        finally:
            self.start.disabled, self.stop.disabled = False, True
            self._done.set()

    def _on_stop(self, _btn: Any = None) -> None:
        self._stop_event.set()
        self.stop.disabled = True
        self._set_status("stopping: abandoning the downloads in flight …")

    def _on_progress(self, p: Any) -> None:
        with self._ui_lock:
            self._show_progress(p)

    def _show_progress(self, p: Any) -> None:
        limit = self._run_limit
        for label, c in p.labels.items():
            if label not in self.bars:
                continue
            bar, text = self.bars[label]
            bar.max = max(1, c["candidates"])
            bar.value = min(c["done"], bar.max)
            want = f" of {limit}" if limit else ""
            text.value = (f"{c['total']}{want} images · {c['accepted']} new · {c['rejected']} rejected"
                          + (f" · {c['skipped']} not needed" if c["skipped"] else ""))
        o = p.overall
        self.overall.max = max(1, o.get("candidates", 0))
        self.overall.value = min(o.get("done", 0), self.overall.max)
        self.overall_text.value = (f"{o.get('accepted', 0)} new · {o.get('rejected', 0)} rejected · "
                                   f"{o.get('existing', 0)} already there")

    def _preview_png(self) -> bytes:
        fig = self.result.preview(per_label=8)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=72)
        return buf.getvalue()

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the running scrape ends; return its result (or raise its error)."""
        if self.thread is None:
            raise RuntimeError("nothing is running: click Start first")
        if not self._done.wait(timeout):
            raise TimeoutError(f"scrape still running after {timeout}s")
        if self.error is not None:
            raise self.error
        return self.result


def scrape_panel(**kwargs: Any) -> ScrapePanel:
    """A :class:`ScrapePanel` (display it as the last expression of a cell)."""
    return ScrapePanel(**kwargs)
