"""The train panel: edit a training command as JSON, Start/Stop it, watch it live, test or resume it.

Thin wiring only: parsing and checking are :mod:`workbench.commands` (any kind of command),
training and testing are :mod:`workbench.jobs`, curves are :mod:`workbench.widgets.views`.

Live updates come from a small poller thread that sets widget *values* (the progress bar, the
status line, the plotly figure's data). Widget state updates are comm messages, which the front
end applies whichever cell is executing — unlike ``print``/``display`` from a thread, which
ipykernel 7 routes to the cell that started the thread (or drops).
"""
from __future__ import annotations

import html
import json
import threading
import time
from pathlib import Path
from typing import Any, Mapping

import ipywidgets as W

from ..commands import Command, parse
from ..registry import ConfigError
from ..runlog import RunLogError
from . import plots
from .common import heading
from .views import ChartView, CurvesView

DEFAULT_COMMAND: dict[str, Any] = {
    "name": "baseline",
    "model": {"preset": "small_cnn", "params": {"hidden": 16}},
    "optimizer": {"name": "Adam", "params": {"lr": 0.003}},
    "epochs": 5,
    "batch_size": 32,
    "image_size": 32,
}
#: Run statuses the Test / Resume buttons apply to.
TESTABLE = ("trained", "stopped")
RESUMABLE = ("stopped", "crashed")


def progress(rows: list[dict], epochs: list[dict], planned_epochs: int | None, planned_steps: int | None,
             elapsed_s: float | None) -> dict[str, Any]:
    """Where a run stands from its logged rows: fraction done, epoch x/y, step, ETA, latest metrics.

    ``planned_steps`` wins when known (few-shot runs, or the Trainer's estimate); otherwise the
    epoch count is used, with the current epoch's share estimated from the first epoch's steps.
    """
    steps = [r["step"] for r in rows if isinstance(r.get("step"), int)]
    step = max(steps) + 1 if steps else 0
    done_epochs = len(epochs)
    frac = None
    if planned_steps:
        frac = min(1.0, step / planned_steps)
    elif planned_epochs:
        first = [r["step"] for r in rows if r.get("epoch") == 0 and isinstance(r.get("step"), int)]
        per_epoch = (max(first) + 1) if first and done_epochs >= 1 else None
        inside = (step - done_epochs * per_epoch) / per_epoch if per_epoch else 0.0
        frac = min(1.0, (done_epochs + max(0.0, min(inside, 1.0))) / planned_epochs)
    latest: dict[str, float] = {}
    for r in list(rows) + list(epochs):
        for k in ("train_loss", "val_loss", "val_accuracy"):
            if isinstance(r.get(k), (int, float)):
                latest[k] = float(r[k])
    eta = elapsed_s * (1 - frac) / frac if frac and elapsed_s and frac > 0.02 else None
    return {"fraction": frac, "step": step, "epoch": done_epochs, "planned_epochs": planned_epochs,
            "planned_steps": planned_steps, "eta_s": eta, "latest": latest}


def status_text(status: str, p: Mapping[str, Any]) -> str:
    """``running · epoch 3/8 · step 120/320 · ETA 0:42 · train_loss 0.41 · val_accuracy 0.81``."""
    parts = [status]
    if p.get("planned_epochs"):
        parts.append(f"epoch {min(p['epoch'] + (status == 'running'), p['planned_epochs'])}/{p['planned_epochs']}")
    if p.get("step"):
        parts.append(f"step {p['step']}" + (f"/{p['planned_steps']}" if p.get("planned_steps") else ""))
    if p.get("eta_s") is not None and status == "running":
        m, s = divmod(int(round(p["eta_s"])), 60)
        parts.append(f"ETA {m}:{s:02d}")
    parts += [f"{k} {v:.4g}" for k, v in p.get("latest", {}).items()]
    return " · ".join(parts)


class TrainPanel:
    """A JSON command editor checked as you type, Start/Stop/Test/Resume, a live status line with a
    progress bar, live interactive curves, and the results (summary table, confusion matrix).

    Args:
        data: the image folder to train on (editable in the panel).
        command: the initial command (a dict or a parsed command, any kind).
        log: the run log (default ``RunLog()``).
        poll_s: seconds between live updates.
    """

    def __init__(self, data: str | Path | None = None, command: Mapping[str, Any] | Command | None = None,
                 log: Any = None, poll_s: float = 0.5) -> None:
        from ..runlog import RunLog

        self.log = log or RunLog()
        self.poll_s = poll_s
        self.job: Any = None
        self._poller: threading.Thread | None = None
        self._planned: tuple[int | None, int | None] = (None, None)
        self._t0: float | None = None
        cmd = command.to_dict() if isinstance(command, Command) else dict(command or DEFAULT_COMMAND)
        self.editor = W.Textarea(value=json.dumps(cmd, indent=1), description="Command",
                                 layout=W.Layout(width="100%", height="220px"))
        self.data = W.Text(value=str(data or ""), description="Data", placeholder="image folder root/<class>/<img>",
                           layout=W.Layout(width="100%"))
        self.message = W.HTML()
        self.start_button = W.Button(description="Start", button_style="success", icon="play",
                                     tooltip="Validate the command and start training in the background")
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop", disabled=True,
                                    tooltip="Stop after the current batch (the run ends 'stopped', checkpoint kept)")
        self.test_button = W.Button(description="Test", icon="check", disabled=True,
                                    tooltip="Test the trained run on its held-out split")
        self.resume_button = W.Button(description="Resume", icon="forward", disabled=True,
                                      tooltip="Continue a stopped or crashed run from its last checkpoint")
        self.status = W.Label(value="idle")
        self.bar = W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=W.Layout(width="220px"),
                                   bar_style="info")
        self.curves = CurvesView(metrics=("train_loss",), height=320)
        self.curves.view.clear("start a run to see its curves")
        self.plot = self.curves.view.figure          # the live figure (a plotly FigureWidget)
        self.results = W.HTML()
        self.confusion = ChartView(height=300, hidden=True)
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.test_button.on_click(lambda _: self.test())
        self.resume_button.on_click(lambda _: self.resume())
        self.editor.observe(lambda _: self.check(), names="value")
        self.data.observe(lambda _: self.check(), names="value")
        self.widget = W.VBox([
            heading("Train", "edit a training command, start it in the background, watch it, test it"),
            self.editor, self.data, self.message,
            W.HBox([self.start_button, self.stop_button, self.test_button, self.resume_button]),
            W.HBox([W.Label("Status:"), self.bar, self.status]),
            self.curves.widget, self.results, self.confusion.widget,
        ])
        self.check()

    # -- checking ------------------------------------------------------------------
    def command(self) -> Command:
        """The editor's command, parsed (raises ConfigError)."""
        return parse(self.editor.value)

    def _data_problem(self, cmd: Command) -> str | None:
        """What is wrong with the data the command would train on (``None`` when nothing is)."""
        box = self.data.value.strip()
        if box:
            p = Path(box).expanduser()
            if not p.is_dir():
                return f"data: folder {box!r} does not exist" if not p.exists() else f"data: {box!r} is not a folder"
            return None
        if getattr(cmd, "data", None) is None:
            return "data: choose an image folder (the Data box) or set 'data' in the command"
        return None

    def check(self) -> bool:
        """Check the command (fields, names, parameters, shapes, against the data folder) and the
        data; Start is enabled only when both are fine, and says why not otherwise."""
        try:
            cmd = self.command()
            cmd.check(self.data.value.strip() or None)
            problem = self._data_problem(cmd)
            if problem:
                raise ConfigError("data", problem.split(": ", 1)[1], self.data.value)
        except (ConfigError, OSError) as exc:
            problems = getattr(exc, "problems", [exc])
            texts = [getattr(p, "message", str(p)) for p in problems]
            self.message.value = "<br>".join(f"<span style='color:#b00'>✗ {html.escape(t)}</span>" for t in texts)
            self._set_start(False, f"fix the command first: {texts[0]}")
            return False
        self.message.value = "<span style='color:#070'>✓ command is valid</span>"
        self._set_start(True)
        return True

    def _set_start(self, ok: bool, why: str = "") -> None:
        running = self.job is not None and not self.job.done
        self.start_button.disabled = running or not ok
        self.start_button.tooltip = why or "Validate the command and start training in the background"

    # -- actions -------------------------------------------------------------------
    def start(self) -> Any:
        """Start the command in the background (no-op with a message when invalid or already running)."""
        from .. import jobs

        if self.job is not None and not self.job.done:
            self.message.value = "a job is already running: stop it first"
            return None
        if not self.check():
            self.status.value = "invalid command: not started"
            return None
        try:
            cmd = self.command()
            self.job = jobs.start_training(cmd, data=self.data.value.strip() or None, log=self.log)
        except (ConfigError, ValueError, OSError) as exc:
            self.message.value = f"<span style='color:#b00'>✗ {html.escape(str(exc))}</span>"
            self.status.value = "invalid command: not started"
            return None
        self._planned = (getattr(cmd, "epochs", None), getattr(cmd, "steps", None))
        self.message.value = f"started run {self.job.run_id}"
        self._watch("queued")
        return self.job

    def _watch(self, status: str) -> None:
        """Show ``self.job`` live from now on (a poller thread)."""
        self.status.value = status
        self.results.value = ""
        self.confusion.clear(hide=True)
        self.bar.value, self.bar.bar_style = 0.0, "info"
        self._t0 = None
        for b in (self.start_button, self.test_button, self.resume_button):
            b.disabled = True
        self.stop_button.disabled = self.job.job not in ("train", "resume")  # a test runs to its end
        self._poller = threading.Thread(target=self._poll, name="workbench-train-panel", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        """Ask the running job to stop gracefully."""
        if self.job is not None and not self.job.done:
            self.job.stop()
            self.status.value = "stopping…"

    def test(self) -> Any:
        """Test the panel's last run on its held-out split (in the background)."""
        from .. import jobs

        if self.job is None or not self.job.done:
            return None
        self.job = jobs.start_test(self.job.run_id, log=self.log)
        self.message.value = f"testing run {self.job.run_id}"
        self._watch("testing")
        return self.job

    def resume(self) -> Any:
        """Continue the panel's last run from its checkpoint (``workbench.jobs.resume``)."""
        from .. import jobs

        if self.job is None or not self.job.done:
            return None
        try:
            self.job = jobs.resume(self.job.run_id, log=self.log)
        except (RunLogError, ValueError, OSError) as exc:  # e.g. no checkpoint: said, nothing started
            self.message.value = f"<span style='color:#b00'>✗ {html.escape(str(exc))}</span>"
            return None
        self.message.value = f"resumed run {self.job.run_id}"
        self._watch("running")
        return self.job

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the job and the panel's last update are done (tests, scripts)."""
        if self.job is not None:
            self.job.wait(timeout)
        if self._poller is not None:
            self._poller.join(timeout)
        return self.job.result if self.job is not None else None

    # -- live updates --------------------------------------------------------------
    def _poll(self) -> None:
        seen = -1
        while self.job is not None:
            done = self.job.done
            try:
                seen = self.refresh(seen)
            except Exception as exc:  # a failed redraw must not kill live updates
                self.message.value = f"live update failed: {html.escape(str(exc))}"
            if done:
                break
            self.job.wait(self.poll_s)  # returns early when the job ends
        self._finished()

    def refresh(self, seen: int = -1) -> int:
        """One live update: progress bar, status line and (when new rows arrived) the curves."""
        job = self.job
        rec = self.log.get(job.run_id)
        rows, epochs = rec.get("metrics") or [], rec.get("epochs") or []
        if rows and self._t0 is None:
            self._t0 = time.monotonic() - max(0.0, rows[-1].get("time", 0) - rows[0].get("time", 0))
        elapsed = time.monotonic() - self._t0 if self._t0 is not None else None
        p = progress(rows, epochs, *self._planned, elapsed)
        if p["fraction"] is not None and job.job in ("train", "resume"):
            self.bar.value = p["fraction"]
        self.status.value = status_text(rec.get("status", job.status), p)
        if len(rows) != seen and rows:
            self.curves.set_runs([rec])
        return len(rows)

    def _finished(self) -> None:
        job = self.job
        res = job.result or {}
        rec = self.log.get(job.run_id, metrics=False)
        status = res.get("status") or rec.get("status") or job.status
        self.bar.bar_style = "success" if status in ("trained", "completed") else "warning"
        if status in ("trained", "completed"):
            self.bar.value = 1.0
        self.results.value = summary_table(rec.get("summary") or {}, res.get("error") or rec.get("error"))
        chart = plots.confusion_chart(rec)
        if chart is not None:
            self.confusion.show(chart)
        self.check()
        self.stop_button.disabled = True
        self.test_button.disabled = status not in TESTABLE
        self.resume_button.disabled = status not in RESUMABLE
        self.status.value = status  # last: when the page says "stopped", the buttons already say so too

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def summary_table(summary: Mapping[str, Any], error: str | None = None) -> str:
    """A run's summary as a two-column HTML table (scalars only; lists and matrices are drawn elsewhere)."""
    rows = "".join(f"<tr><td style='padding:1px 10px 1px 0'><b>{html.escape(str(k))}</b></td>"
                   f"<td style='text-align:right'>{html.escape(_fmt(v))}</td></tr>"
                   for k, v in summary.items() if not isinstance(v, (list, dict)))
    err = f"<div style='color:#b00'>error: {html.escape(error)}</div>" if error else ""
    return (f"<table style='font-size:0.9em'>{rows}</table>" if rows else "") + err


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def train_panel(data: str | Path | None = None, command: Mapping[str, Any] | None = None, log: Any = None) -> TrainPanel:
    """Build a :class:`TrainPanel` (display it as the cell's last expression)."""
    return TrainPanel(data, command, log)
