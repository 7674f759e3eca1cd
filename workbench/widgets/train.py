"""The train panel: edit a training command as JSON, Start/Stop it, watch the loss live.

Thin wiring only: parsing and checking are :mod:`workbench.commands` (any kind of command),
training is :func:`workbench.jobs.start_training`, curves are :mod:`workbench.widgets.plots`.

Live updates come from a small poller thread that sets widget *values* (an Image's PNG
bytes, a Label's text). Widget state updates are comm messages, which the front end
applies whichever cell is executing — unlike ``print``/``display`` from a thread, which
ipykernel 7 routes to the cell that started the thread (or drops).
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Mapping

import ipywidgets as W

from ..commands import Command, parse
from ..registry import ConfigError
from . import plots

DEFAULT_COMMAND: dict[str, Any] = {
    "name": "baseline",
    "model": {"preset": "small_cnn", "params": {"hidden": 16}},
    "optimizer": {"name": "Adam", "params": {"lr": 0.003}},
    "epochs": 5,
    "batch_size": 32,
    "image_size": 32,
}


class TrainPanel:
    """A JSON command editor with validation messages, Start/Stop, status, live loss curve, final metrics.

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
        self.status = W.Label(value="idle")
        self.plot = W.Image(format="png", layout=W.Layout(width="420px"))
        self.results = W.HTML()
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.editor.observe(lambda _: self.check(), names="value")
        self.data.observe(lambda _: self.check(), names="value")
        self.widget = W.VBox([
            self.editor, self.data, self.message,
            W.HBox([self.start_button, self.stop_button, W.Label("Status:"), self.status]),
            self.plot, self.results,
        ])
        self.check()

    # -- actions -------------------------------------------------------------------
    def command(self) -> Command:
        """The editor's command, parsed (raises ConfigError)."""
        return parse(self.editor.value)

    def check(self) -> bool:
        """Check the editor's command: fields, names, parameters and shapes (against the data folder)."""
        try:
            self.command().check(self.data.value.strip() or None)
        except (ConfigError, OSError) as exc:
            problems = getattr(exc, "problems", [exc])
            self.message.value = "<br>".join(f"<span style='color:#b00'>✗ {_esc(getattr(p, 'message', str(p)))}</span>"
                                             for p in problems)
            return False
        self.message.value = "<span style='color:#070'>✓ command is valid</span>"
        return True

    def start(self) -> Any:
        """Start the command in the background (no-op with a message when invalid or already running)."""
        from .. import jobs

        if self.job is not None and not self.job.done:
            self.message.value = "a job is already running: stop it first"
            return None
        try:
            cmd = self.command()
            self.job = jobs.start_training(cmd, data=self.data.value.strip() or None, log=self.log)
        except (ConfigError, ValueError, OSError) as exc:
            self.message.value = f"<span style='color:#b00'>✗ {_esc(str(exc))}</span>"
            self.status.value = "invalid command: not started"
            return None
        self.message.value = f"started run {self.job.run_id}"
        self.status.value = "queued"
        self.results.value = ""
        self.start_button.disabled = True
        self.stop_button.disabled = False
        self._poller = threading.Thread(target=self._poll, name="workbench-train-panel", daemon=True)
        self._poller.start()
        return self.job

    def stop(self) -> None:
        """Ask the running job to stop gracefully."""
        if self.job is not None and not self.job.done:
            self.job.stop()
            self.status.value = "stopping…"

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
                self.message.value = f"live update failed: {_esc(str(exc))}"
            if done:
                break
            self.job.wait(self.poll_s)  # returns early when the job ends
        self._finished()

    def refresh(self, seen: int = -1) -> int:
        """One live update: status label and (when new rows arrived) the loss curve."""
        job = self.job
        st = job.status
        rows = job.metrics()
        last = next((r["train_loss"] for r in reversed(rows) if "train_loss" in r), None)
        epoch = max((r.get("epoch", -1) for r in rows), default=-1)
        self.status.value = st + (f" · epoch {epoch + 1}" if epoch >= 0 else "") + \
            (f" · loss {last:.4f}" if last is not None else "")
        if len(rows) != seen and rows:
            self.plot.value = plots.loss_png({job.run_id[-6:]: rows}, title=f"run {job.run_id}")
        return len(rows)

    def _finished(self) -> None:
        job = self.job
        res = job.result or {}
        self.status.value = res.get("status") or job.status
        s = res.get("summary") or {}
        parts = [f"<b>{_esc(str(k))}</b>: {v:.4g}" if isinstance(v, float) else f"<b>{_esc(str(k))}</b>: {_esc(str(v))}"
                 for k, v in s.items() if not isinstance(v, (list, dict))]
        if res.get("error"):
            parts.append(f"<span style='color:#b00'>error: {_esc(res['error'])}</span>")
        self.results.value = " · ".join(parts)
        self.start_button.disabled = False
        self.stop_button.disabled = True

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def train_panel(data: str | Path | None = None, command: Mapping[str, Any] | None = None, log: Any = None) -> TrainPanel:
    """Build a :class:`TrainPanel` (display it as the cell's last expression)."""
    return TrainPanel(data, command, log)


def _esc(s: str) -> str:
    import html

    return html.escape(s)
