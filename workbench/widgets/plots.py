"""Loss curves and confusion matrices for notebooks and panels.

Panels render to PNG bytes through matplotlib's object API (``Figure`` + Agg canvas),
never ``pyplot``: pyplot keeps global state that is not thread-safe, and a panel redraws
from a background thread while the user keeps working in the kernel.
"""
from __future__ import annotations

import io
import math
from typing import Any, Mapping, Sequence


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        v = r.get(key)
        if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
            xs.append(r.get("step", len(xs)))
            ys.append(float(v))
    return xs, ys


def plot_loss_curves(ax: Any, runs: Mapping[str, Sequence[Mapping[str, Any]]], key: str = "train_loss",
                     val_key: str | None = "val_loss") -> Any:
    """Overlay ``key`` (per step) and ``val_key`` (per epoch, dashed) of several runs on one axis.

    ``runs`` maps a label to its metric rows (``RunLog.get(id)["metrics"]`` or ``job.metrics()``).
    """
    for i, (label, rows) in enumerate(runs.items()):
        color = f"C{i % 10}"
        xs, ys = _series(rows, key)
        if xs:
            ax.plot(xs, ys, color=color, lw=1.2, label=f"{label} {key}")
        if val_key:
            vx, vy = _series(rows, val_key)
            if vx:
                ax.plot(vx, vy, color=color, lw=1.5, ls="--", marker="o", ms=3, label=f"{label} {val_key}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return ax


def plot_confusion(ax: Any, matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str = "") -> Any:
    """A confusion matrix (rows: true class, columns: predicted) with counts in the cells."""
    import numpy as np

    m = np.asarray(matrix)
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    hi = m.max() if m.size else 0
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if v > hi / 2 else "black")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def figure_png(draw: Any, size: tuple[float, float] = (5.0, 3.0), dpi: int = 80) -> bytes:
    """Render ``draw(ax)`` on a fresh Agg figure (thread-safe, no pyplot) and return PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    draw(ax)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def loss_png(runs: Mapping[str, Sequence[Mapping[str, Any]]], title: str = "") -> bytes:
    """PNG of overlaid loss curves (see :func:`plot_loss_curves`)."""
    def draw(ax: Any) -> None:
        plot_loss_curves(ax, runs)
        if title:
            ax.set_title(title, fontsize=9)
    return figure_png(draw)


def confusion_png(matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str = "") -> bytes:
    """PNG of a confusion matrix."""
    return figure_png(lambda ax: plot_confusion(ax, matrix, classes, title), size=(3.6, 3.2))


def live_curves(every: int = 10, title: str | None = None):
    """A Lightning callback redrawing meta-loss and meta-val accuracy in the notebook as training runs.

    Outside IPython it only collects the history (``.history``); pass it to any run:
    ``run_training(…, callbacks=[live_curves()])`` or ``train_from_command(…, callbacks=[…])``.
    It draws with ``display`` from the training thread, so use it with synchronous training
    in a notebook cell (panels update widget values instead).
    """
    import pytorch_lightning as pl

    class LiveCurves(pl.Callback):
        def __init__(self) -> None:
            self.history: dict[str, list[tuple[int, float]]] = {"train_loss": [], "val_accuracy": []}
            self._handle = None

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            v = trainer.callback_metrics.get("train_loss")
            if v is not None:
                self.history["train_loss"].append((trainer.global_step, float(v)))
            if trainer.global_step % every == 0:
                self.draw()

        def on_validation_epoch_end(self, trainer, pl_module) -> None:
            v = trainer.callback_metrics.get("val_accuracy")
            if v is not None and not trainer.sanity_checking:
                self.history["val_accuracy"].append((trainer.global_step, float(v)))

        def on_train_end(self, trainer, pl_module) -> None:
            self.draw()

        def draw(self) -> None:
            try:
                from IPython import get_ipython
                from IPython.display import display
            except ImportError:
                return
            if get_ipython() is None:
                return
            import matplotlib.pyplot as plt

            fig, (a, b) = plt.subplots(1, 2, figsize=(9, 2.8))
            for ax, key, label in ((a, "train_loss", "meta-train loss"), (b, "val_accuracy", "meta-val accuracy")):
                pts = self.history[key]
                if pts:
                    ax.plot(*zip(*pts), marker="o" if key == "val_accuracy" else None, ms=3)
                ax.set_xlabel("meta-iteration")
                ax.set_title(label)
            if title:
                fig.suptitle(title)
            fig.tight_layout()
            if self._handle is None:
                self._handle = display(fig, display_id=True)
            else:
                self._handle.update(fig)
            plt.close(fig)

    return LiveCurves()
