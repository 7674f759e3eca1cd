"""The tune panel: a dataset, a budget, Start/Stop, and the best-so-far curve drawn live — with the
memory (warm start + learned pruner) and without it (TPE + MedianPruner), side by side.

Two sources: **train** runs :func:`workbench.meta.tune` on a dataset folder (every trial a real run
in the run log); **replay** tunes a task of the shipped meta-dataset against its stored curves
(:func:`workbench.meta.tune_replay.replay_with_and_without_memory`: real runs, replayed in seconds —
what quick mode uses). Either way a worker thread runs the studies and a poller thread redraws
the curve from the studies' trials (widget values only, so it reaches the page from any thread).
"""
from __future__ import annotations

import html
import threading
import time
from typing import Any

import ipywidgets as W

from . import plots
from .common import heading
from .views import ChartView

SOURCES = ("replay (stored curves)", "train (real runs)")
MEMORY = {"with memory": {"history": "auto", "warm_start": True, "pruner": "learned"},
          "without memory": {"history": None, "warm_start": False, "pruner": "median"}}


def study_anytime(study: Any) -> tuple[list[float], list[float]]:
    """(epochs spent, best value so far) after each finished own trial of a study (live or done)."""
    from ..meta.study import anytime_curve

    df = anytime_curve(study)
    if df.empty:
        return [], []
    df = df[df["best"].notna()]
    return [float(x) for x in df["epochs"]], [float(x) for x in df["best"]]


class TunePanel:
    """Dataset (folder, or a meta-dataset task to replay), budget, Start/Stop, live best-so-far curves.

    Widgets: ``source`` (ToggleButtons), ``task`` (Dropdown, replay), ``data`` (Combobox, train),
    ``budget`` (Text: ``"120 epochs"``, ``"20 trials"``, ``"10 min"``), ``memory`` (ToggleButtons:
    both / with memory / without memory), ``start_button``, ``stop_button``; outputs ``status``,
    ``results`` (HTML) and ``curve`` (:class:`ChartView`). ``results_by_label`` holds what each
    study returned (a ``TuneResult`` or a ``ReplayResult``).
    """

    def __init__(self, log: Any = None, data: str = "", budget: str = "120 epochs", source: str | None = None,
                 task: str = "objects-c", poll_s: float = 0.5) -> None:
        from .. import paths
        from ..meta.replay import MetaDataset
        from ..meta.tune import SHIPPED_METADATASET
        from ..runlog import RunLog

        self.log = log or RunLog()
        self.poll_s = poll_s
        style = {"description_width": "initial"}
        tasks = sorted(MetaDataset.load(SHIPPED_METADATASET).tasks) if SHIPPED_METADATASET.is_file() else []
        self.source = W.ToggleButtons(options=list(SOURCES), style={**style, "button_width": "190px"}, description="Source",
                                      value=source or (SOURCES[0] if paths.quick_mode() else SOURCES[1]))
        self.task = W.Dropdown(options=tasks, value=task if task in tasks else (tasks[0] if tasks else None),
                               description="Task (replayed)", style=style)
        folders = sorted(str(p) for p in paths.datasets_dir().iterdir() if p.is_dir())
        self.data = W.Combobox(value=str(data), options=folders, description="Dataset folder", style=style,
                               placeholder="image folder DIR/<class>/<image>", layout=W.Layout(width="60%"))
        self.budget = W.Text(value=budget, description="Budget", style=style, placeholder="120 epochs | 20 trials | 10 min")
        self.memory = W.ToggleButtons(options=["both", *MEMORY], value="both", description="Compare", style=style)
        self.start_button = W.Button(description="Start", button_style="success", icon="play")
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop", disabled=True,
                                    tooltip="start no new trial (the one running finishes)")
        self.status = W.HTML()
        self.curve = ChartView(height=340)
        self.curve.clear("press Start: the best-so-far curve is drawn here as the trials finish")
        self.results = W.HTML()
        self.studies: dict[str, Any] = {}
        self.results_by_label: dict[str, Any] = {}
        self.oracle: float | None = None
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.source.observe(lambda _: self._show_inputs(), names="value")
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.widget = W.VBox([heading("Tune", "an Optuna search for this dataset, with the run log's memory and "
                                              "without it"),
                              self.source, self.task, self.data, W.HBox([self.budget, self.memory]),
                              W.HBox([self.start_button, self.stop_button]), self.status, self.curve.widget,
                              self.results])
        self._show_inputs()

    def _show_inputs(self) -> None:
        replaying = self.source.value == SOURCES[0]
        self.task.layout.display = "" if replaying else "none"
        self.data.layout.display = "none" if replaying else ""

    def labels(self) -> list[str]:
        """The studies Start runs, in order."""
        return list(MEMORY) if self.memory.value == "both" else [self.memory.value]

    # -- actions -----------------------------------------------------------------------------
    def start(self) -> bool:
        """Check the inputs, then run the studies in the background; False (with the reason) when invalid."""
        from ..meta.tune import Budget

        if self._worker is not None and self._worker.is_alive():
            self.status.value = _error("already running: Stop first")
            return False
        try:
            budget = Budget.parse(self.budget.value.strip())
            if self.source.value == SOURCES[0] and budget.kind != "epochs":
                raise ValueError(f"budget = {self.budget.value!r}: a replay counts epochs (e.g. '120 epochs')")
            if self.source.value == SOURCES[1] and not self.data.value.strip():
                raise ValueError("choose a dataset folder")
        except ValueError as exc:
            self.status.value = _error(str(exc))
            return False
        self._stop.clear()
        self.studies, self.results_by_label, self.oracle = {}, {}, None
        self.results.value = ""
        self.curve.clear("starting…")
        self.start_button.disabled, self.stop_button.disabled = True, False
        body = self._replay if self.source.value == SOURCES[0] else self._train
        self._worker = threading.Thread(target=self._run, args=(body, budget), daemon=True, name="workbench-tune-panel")
        self._worker.start()
        threading.Thread(target=self._poll, daemon=True, name="workbench-tune-poll").start()
        return True

    def stop(self) -> None:
        """Start no new trial; the running one finishes (its run stays a complete record)."""
        self._stop.set()
        self.status.value = "stopping after the current trial…"

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until Start's studies are done; returns ``results_by_label``."""
        if self._worker is not None:
            self._worker.join(timeout)
        time.sleep(self.poll_s * 2)  # let the poller draw the last state
        return dict(self.results_by_label)

    # -- the work (worker thread) ----------------------------------------------------------------
    def _run(self, body: Any, budget: Any) -> None:
        try:
            body(budget)
            self.status.value = ("stopped" if self._stop.is_set() else "done") + ": " + self._summary()
        except Exception as exc:  # shown in the panel; finished trials stay in the run log
            self.status.value = _error(f"{type(exc).__name__}: {exc}")
        finally:
            self.start_button.disabled, self.stop_button.disabled = False, True
            self.redraw()
            self.results.value = self._results_html()

    def _replay(self, budget: Any) -> None:
        from ..meta.tune_replay import replay_with_and_without_memory

        self.status.value = f"replaying {html.escape(str(self.task.value))} from the shipped meta-dataset…"
        out = replay_with_and_without_memory(self.task.value, budget_epochs=int(budget.amount),
                                             on_study=lambda label, st: self.studies.__setitem__(label, st))
        self.oracle = out["oracle"]
        self.results_by_label = {k: out[k] for k in self.labels()}

    def _train(self, budget: Any) -> None:
        from ..meta.tune import tune

        for label in self.labels():
            if self._stop.is_set():
                break
            name = f"panel-{label.replace(' ', '-')}-{int(time.time())}"
            self.studies[label] = name
            self.status.value = f"{html.escape(label)}: study <code>{name}</code> running…"
            self.results_by_label[label] = tune(self.data.value.strip(), budget=str(budget), name=name, log=self.log,
                                                stop=self._stop, **MEMORY[label])

    # -- drawing (poller thread) ----------------------------------------------------------------------
    def _study(self, label: str) -> Any:
        st = self.studies.get(label)
        if isinstance(st, str):  # a study tune() runs in its journal file: read its trials so far
            import optuna

            from ..meta.study import study_storage

            try:
                return optuna.load_study(study_name=st, storage=study_storage(None, st))
            except KeyError:  # not created yet
                return None
        return st

    def curves(self) -> dict[str, tuple[list[float], list[float]]]:
        """Best-so-far vs epochs of each study started so far."""
        out = {}
        for label in self.labels():
            st = self._study(label)
            if st is not None:
                out[label] = study_anytime(st)
        return out

    def redraw(self) -> None:
        """Draw the current best-so-far curves."""
        curves = {k: v for k, v in self.curves().items() if v[0]}
        if not curves:
            return
        target = self.oracle - 0.01 if self.oracle is not None else None
        self.curve.show(plots.anytime_chart(curves, title="Best validation accuracy so far vs epochs trained",
                                            y_label="best val accuracy so far", target=target))

    def _poll(self) -> None:
        while self._worker is not None and self._worker.is_alive():
            try:
                self.redraw()
            except Exception:  # a study being written to can be read half-way; the next poll redraws
                pass
            time.sleep(self.poll_s)

    def _summary(self) -> str:
        parts = []
        target = self.oracle - 0.01 if self.oracle is not None else None
        for label, (xs, ys) in self.curves().items():
            if not ys:
                continue
            hit = next((x for x, y in zip(xs, ys) if target is not None and y >= target - 1e-9), None)
            parts.append(f"{label}: best {ys[-1]:.3f}" + (f", within 1 point of the task's best after {hit:.0f} epochs"
                                                          if hit is not None else f" after {xs[-1]:.0f} epochs"))
        return " · ".join(parts) or "no finished trial"

    def _results_html(self) -> str:
        rows = []
        for label, res in self.results_by_label.items():
            best = getattr(res, "best", None)
            if best is None and hasattr(res, "trials"):  # a replay result
                done = [t for t in res.trials if not t["pruned"] and t["value"] is not None]
                t = max(done, key=lambda t: t["value"]) if done else None
                best = {"params": t["params"], "value": t["value"], "test_accuracy": t["test"]} if t else None
            if best:
                rows.append(f"<tr><td>{html.escape(label)}</td><td>{best['value']:.3f}</td>"
                            f"<td>{_fmt(best.get('test_accuracy'))}</td><td><code>{html.escape(str(best['params']))}"
                            "</code></td></tr>")
        if not rows:
            return ""
        return ("<b>Best trial</b><table style='font-size:0.9em'><tr><th style='text-align:left'>study</th>"
                "<th>val</th><th>test</th><th style='text-align:left'>params</th></tr>" + "".join(rows) + "</table>")


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else "—"


def _error(msg: str) -> str:
    return f"<span style='color:#b00'>⚠ {html.escape(msg)}</span>"
