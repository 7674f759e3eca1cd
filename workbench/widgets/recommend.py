"""The recommend panel: pick a dataset → what is recommended and why → Start trains *and tests* it.

Thin shell over :func:`workbench.meta.recommend.recommend` and :mod:`workbench.jobs`. Start runs
in a background thread that only sets widget values: train the (possibly edited) command, test
it on its held-out split, and — when asked — train and test the default command beside it, so
the panel ends with tested runs (scored past tasks for the next recommendation) and says how the
recommendation did.
"""
from __future__ import annotations

import html
import json
import threading
from pathlib import Path
from typing import Any, Mapping

import ipywidgets as W

from .runs import command_defaults
from .common import heading
from .train import progress, status_text

#: Shown in "what it recommends" even when equal to the default.
ALWAYS = ("optimizer.name", "optimizer.params.lr", "batch_size", "epochs", "model.preset", "model.params.hidden")


def _error(msg: str) -> str:
    return f"<span style='color:#b00'>⚠ {html.escape(msg)}</span>"


def recommended_html(command: Mapping[str, Any]) -> str:
    """What a recommended command sets, next to the default command's value."""
    from ..meta.common import flatten, hparams

    hp = hparams(command)
    defaults = command_defaults(command)
    flat = flatten(command)
    # where it trains and how it is split are not the recommendation: leave them out
    keys = [k for k in hp if k in ALWAYS
            or (defaults.get(k) != flat.get(k) and not k.startswith(("trainer.", "split.")))]
    rows = "".join(
        f"<tr><td style='padding:1px 10px 1px 0'><code>{html.escape(k)}</code></td>"
        f"<td><b>{html.escape(json.dumps(hp[k], default=str))}</b></td>"
        f"<td style='color:#777'>{html.escape(json.dumps(defaults[k], default=str)) if k in defaults else '—'}</td></tr>"
        for k in keys)
    return ("<b>Recommended</b><table style='font-size:0.9em'><tr><th style='text-align:left'>setting</th>"
            f"<th style='text-align:left'>recommended</th><th style='text-align:left'>default</th></tr>{rows}</table>")


class RecommendPanel:
    """Pick a dataset → recommended command with its evidence → Start trains and tests it.

    Widgets: ``data`` (Combobox of dataset folders; any path may be typed), ``k``,
    ``recommend_button``, ``command`` (Textarea, JSON, in a collapsed accordion), ``with_default``
    (Checkbox: also train and test the default command), ``start_button``; outputs ``what``
    (what is recommended), ``evidence`` and ``status`` (HTML), ``result`` (the tested scores).
    ``job`` is the last job handle, ``tested`` the ids of the tested runs. ``kind`` restricts the
    past runs it learns from (default: baseline training runs); ``history`` (records) replaces the
    run log as the memory it learns from (e.g. the shipped meta-dataset's runs).
    """

    def __init__(self, log: Any = None, data: str = "", kind: str | None = "baseline", poll_s: float = 0.5,
                 history: Any = None) -> None:
        from .. import paths
        from ..runlog import RunLog

        self.log = log or RunLog()
        self.poll_s = poll_s
        folders = sorted(str(p) for p in paths.datasets_dir().iterdir() if p.is_dir())
        style = {"description_width": "initial"}
        self.data = W.Combobox(value=str(data), options=folders, description="Dataset folder", style=style,
                               placeholder="image folder DIR/<class>/<image>", layout=W.Layout(width="70%"))
        self.k = W.IntSlider(value=3, min=1, max=10, description="k nearest tasks", style=style)
        self.recommend_button = W.Button(description="Recommend", button_style="primary", icon="magic")
        self.what = W.HTML()
        self.evidence = W.HTML()
        self.command = W.Textarea(rows=12, layout=W.Layout(width="100%"))
        self.editor = W.Accordion(children=[self.command], titles=("Recommended command (JSON, editable)",))
        self.editor.selected_index = None
        self.with_default = W.Checkbox(value=False, description="also train the default command to compare",
                                       indent=False, layout=W.Layout(width="auto"))
        self.start_button = W.Button(description="Start", button_style="success", icon="play", disabled=True,
                                     tooltip="Train the command on the dataset, then test it")
        self.status = W.HTML()
        self.result = W.HTML()
        self.kind = kind
        self.history = history
        self.recommendation = None
        self.job = None
        self.tested: dict[str, str] = {}
        self._worker: threading.Thread | None = None
        self.recommend_button.on_click(lambda _: self.recommend())
        self.start_button.on_click(lambda _: self.start())
        self.widget = W.VBox([heading("Recommend", "a training command for a new dataset from the most similar "
                                                   "past tasks; Start trains and tests it"),
                              self.data, W.HBox([self.k, self.recommend_button]), self.what, self.evidence,
                              self.editor, W.HBox([self.start_button, self.with_default]), self.status, self.result])

    def recommend(self) -> None:
        """Recommend for the chosen folder: what, why (the evidence), and the command to edit."""
        from ..meta.recommend import recommend

        path = self.data.value.strip()
        self.what.value = self.result.value = ""
        if not path:
            self.evidence.value = _error("choose a dataset folder")
            self.start_button.disabled = True
            return
        try:
            from ..meta.recommend import TaskIndex

            index = TaskIndex(runs=self.history, kind=self.kind) if self.history is not None else None
            rec = recommend(Path(path).expanduser(), log=self.log, k=self.k.value, kind=self.kind, index=index)
        except Exception as exc:
            self.evidence.value = _error(str(exc))
            self.start_button.disabled = True
            return
        self.recommendation = rec
        self.what.value = recommended_html(rec.command)
        ev = rec.neighbours[["task", "distance", "weight", "runs", "best_score", "recipe_score"]]
        self.evidence.value = ("<b>Evidence</b>: the nearest past tasks, their best score and this recipe's score"
                               + ev.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0))
        self.command.value = json.dumps(rec.command, indent=1)
        self.start_button.disabled = False
        self.status.value = ""

    def start(self) -> None:
        """Check the (possibly edited) command, then train and test it in the background."""
        from ..commands import parse
        from ..training import prepare

        if self._worker is not None and self._worker.is_alive():
            self.status.value = _error("already running")
            return
        try:
            cmd = json.loads(self.command.value)
        except json.JSONDecodeError as exc:
            self.status.value = _error(f"command is not valid JSON: {exc.msg} at line {exc.lineno}")
            return
        data = self.data.value.strip()
        try:
            prepare(cmd, data)  # a bad edit: the validation message, no run created
        except Exception as exc:
            self.status.value = _error(str(exc))
            return
        todo = [("recommended", cmd)]
        if self.with_default.value:
            base = parse({"kind": cmd.get("kind", "baseline")}).to_dict()
            base.update({k: cmd[k] for k in ("epochs", "image_size", "channels", "split", "seed") if k in cmd})
            todo.append(("default", {k: v for k, v in base.items() if v is not None and k != "data"}))
        self.tested = {}
        self.result.value = ""
        self.start_button.disabled = True
        self._worker = threading.Thread(target=self._train_and_test, args=(todo, data), daemon=True,
                                        name="workbench-recommend-panel")
        self._worker.start()

    def _train_and_test(self, todo: list[tuple[str, dict]], data: str) -> None:
        from .. import jobs

        scores: dict[str, str] = {}
        try:
            for label, cmd in todo:
                self.job = jobs.start_training(cmd, data=data, log=self.log, tags=(label,) if label == "recommended"
                                               else ("recommend-baseline",))
                self.status.value = f"{label}: started run <code>{html.escape(self.job.run_id)}</code>"
                self._follow(label, getattr_steps(cmd))
                if self.job.result and self.job.result["status"] in ("trained", "stopped"):
                    self.job = jobs.start_test(self.job.run_id, log=self.log)
                    self.status.value = f"{label}: testing run <code>{html.escape(self.job.run_id)}</code>"
                    self.job.wait()
                rec = self.log.get(self.job.run_id, metrics=False)
                self.tested[label] = rec["id"]
                acc = (rec.get("summary") or {}).get("test_accuracy")
                scores[label] = f"{acc:.3f}" if isinstance(acc, float) else rec.get("status", "?")
                self.result.value = result_html(self.tested, scores, self.log)
            self.status.value = "tested: " + " · ".join(f"{k} test accuracy {v}" for k, v in scores.items())
        except Exception as exc:  # shown in the panel; the run (if any) ends failed in the run log
            self.status.value = _error(f"{type(exc).__name__}: {exc}")
        finally:
            self.start_button.disabled = False

    def _follow(self, label: str, planned: tuple[int | None, int | None]) -> None:
        job = self.job
        while not job.done:
            rec = self.log.get(job.run_id)
            p = progress(rec.get("metrics") or [], rec.get("epochs") or [], *planned, None)
            self.status.value = f"{label}: " + html.escape(status_text(rec.get("status", ""), p))
            job.wait(self.poll_s)

    def wait(self, timeout: float | None = None) -> dict[str, str]:
        """Block until Start's train-and-test work is done; returns ``{label: run id}`` of the tested runs."""
        if self._worker is not None:
            self._worker.join(timeout)
        return dict(self.tested)


def getattr_steps(cmd: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """(planned epochs, planned steps) of a command dict, for the status line."""
    e, s = cmd.get("epochs"), cmd.get("steps")
    return (e if isinstance(e, int) else None, s if isinstance(s, int) else None)


def result_html(tested: Mapping[str, str], scores: Mapping[str, str], log: Any) -> str:
    """The tested runs: label, run, test accuracy."""
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td><code>{html.escape(tested[k])}</code></td>"
                   f"<td><b>{html.escape(scores.get(k, ''))}</b></td></tr>" for k in tested)
    return ("<b>Tested</b><table style='font-size:0.9em'><tr><th style='text-align:left'>command</th>"
            f"<th style='text-align:left'>run</th><th style='text-align:left'>test accuracy</th></tr>{rows}</table>")
