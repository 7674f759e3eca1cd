"""The baseline image classifier as a LightningModule, and ``predict`` for trained runs.

Logged metrics (what the run log and the panels read):
``train_loss`` every step, ``val_loss`` / ``val_accuracy`` every epoch, and on test
``test_loss``, ``test_accuracy``, ``test_top{k}_accuracy`` plus ``self.test_results``
(per-class accuracy and the confusion matrix) for the jobs layer to store.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import pytorch_lightning as pl
import torch

from .. import registry, runtime
from ..commands import parse
from ..nets.builder import build_model
from ..registry import build_component
from .fastconv import channels_last


class ImageClassifier(pl.LightningModule):
    """A classifier built from a training command (model, loss, optimizer, scheduler).

    Args:
        command: the training command as a dict (stored by ``save_hyperparameters``, so a
            checkpoint alone rebuilds the model).
        classes: class names in label order.
        in_shape: one input's shape (C, H, W).
    """

    def __init__(self, command: Mapping[str, Any], classes: Sequence[str], in_shape: Sequence[int]) -> None:
        super().__init__()
        self.save_hyperparameters({"command": dict(command), "classes": list(classes),
                                   "in_shape": [int(v) for v in in_shape]})
        self.command = parse(command)
        self.classes = list(classes)
        self.model = build_model(self.command.model, n_labels=len(self.classes), in_shape=tuple(in_shape))
        self.criterion = build_component(self.command.criterion, registry.losses(), "criterion", "loss")
        self.test_results: dict[str, Any] | None = None
        self._test_logits: list[torch.Tensor] = []
        self._test_targets: list[torch.Tensor] = []

    @classmethod
    def from_command(cls, cmd: Any, data: Any) -> "ImageClassifier":
        """The classifier a baseline command describes, over ``data``'s classes and input shape."""
        return cls(cmd.to_dict(), data.classes, data.in_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def batch_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch in the steps; on CPU in channels-last layout (measured: a small CNN's
        training step took 12.8 instead of 21.1 ms, one thread, 32 RGB images at 32 px)."""
        return self(channels_last(x) if x.device.type == "cpu" else x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self.batch_logits(x)
        loss = self.criterion(logits, y)
        self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self.batch_logits(x)
        loss = self.criterion(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(y))
        self.log("val_accuracy", acc, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(y))

    def on_test_epoch_start(self) -> None:
        self._test_logits, self._test_targets = [], []

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self.batch_logits(x)
        self.log("test_loss", self.criterion(logits, y), on_epoch=True, sync_dist=True, batch_size=len(y))
        self._test_logits.append(logits.detach().float().cpu())
        self._test_targets.append(y.detach().cpu())

    def on_test_epoch_end(self) -> None:
        logits = torch.cat(self._test_logits) if self._test_logits else torch.zeros(0, len(self.classes))
        targets = torch.cat(self._test_targets) if self._test_targets else torch.zeros(0, dtype=torch.long)
        self.test_results = classification_report(logits, targets, self.classes, self.command.top_k)
        k = self.test_results["top_k"]
        self.log("test_accuracy", self.test_results["accuracy"])
        self.log(f"test_top{k}_accuracy", self.test_results["top_k_accuracy"])

    def configure_optimizers(self) -> Any:
        opt = build_component(self.command.optimizer, registry.optimizers(), "optimizer", "optimizer",
                              self.parameters())
        if self.command.scheduler is None:
            return opt
        sched = build_component(self.command.scheduler, registry.schedulers(), "scheduler", "scheduler", opt)
        conf: dict[str, Any] = {"scheduler": sched, "interval": "epoch"}
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            conf["monitor"] = "val_loss"
        return {"optimizer": opt, "lr_scheduler": conf}


def classification_report(logits: torch.Tensor, targets: torch.Tensor, classes: Sequence[str],
                          top_k: int = 3) -> dict[str, Any]:
    """Accuracy, top-k accuracy, per-class accuracy and the confusion matrix (rows = true class).

    The numbers are torchmetrics' (``multiclass_accuracy``, ``multiclass_confusion_matrix``);
    a class without test images has per-class accuracy ``None``.
    """
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_confusion_matrix

    n = len(classes)
    k = max(1, min(int(top_k), n))
    total = int(len(targets))
    out: dict[str, Any] = {"top_k": k, "classes": list(classes), "n_test": total}
    if not total:
        return {**out, "accuracy": float("nan"), "top_k_accuracy": float("nan"),
                "per_class_accuracy": {c: None for c in classes}, "confusion_matrix": [[0] * n for _ in range(n)]}
    conf = multiclass_confusion_matrix(logits, targets, num_classes=n)
    per_class = multiclass_accuracy(logits, targets, num_classes=n, average=None)
    support = conf.sum(1)
    return {**out, "accuracy": float(multiclass_accuracy(logits, targets, num_classes=n, average="micro")),
            "top_k_accuracy": float(multiclass_accuracy(logits, targets, num_classes=n, average="micro", top_k=k)),
            "per_class_accuracy": {c: float(per_class[i]) if support[i] else None for i, c in enumerate(classes)},
            "confusion_matrix": conf.tolist()}


def load_classifier(run_ref: str, log: Any = None, checkpoint: str | None = None) -> tuple[ImageClassifier, dict]:
    """Reload a trained run's classifier (best checkpoint unless ``checkpoint`` is given) and its record."""
    from ..runlog import RunLog
    from .loading import load_learner

    rec = (log or RunLog()).get(run_ref, metrics=False)
    model, _ = load_learner(rec, checkpoint)
    return model, rec


def predict(run: str | Mapping[str, Any], images: Sequence[Any], log: Any = None,
            top: int = 1) -> list[dict[str, Any]]:
    """Classify new images (paths or PIL images) with a trained run.

    Returns one dict per image: ``label``, ``probability`` and the ``top`` (label, probability) pairs.
    The images go through the run's own preprocessing (mode, PIL ops, size, eval transforms).
    """
    from ..data.folders import load_image
    from ..data.imagefolder import build_transform

    ref = run["id"] if isinstance(run, Mapping) else run
    model, _ = load_classifier(ref, log)
    cmd = model.command
    tf = build_transform(cmd.eval_transforms, "eval_transforms")
    xs = []
    for i, im in enumerate(images):
        x = torch.from_numpy(load_image(im, cmd.channels, cmd.image_hw, cmd.pil_ops))
        if tf is not None:
            with runtime.seeded(runtime.derive_seed(cmd.seed, "predict", i)):
                x = tf(x)
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        xs.append(x)
    with torch.no_grad():
        probs = torch.softmax(model(torch.stack(xs)), dim=1)
    out = []
    top = max(1, min(top, len(model.classes)))
    for p in probs:
        vals, idx = p.topk(top)
        pairs = [(model.classes[i], float(v)) for v, i in zip(vals.tolist(), idx.tolist())]
        out.append({"label": pairs[0][0], "probability": pairs[0][1], "top": pairs})
    return out


__all__ = ["ImageClassifier", "classification_report", "load_classifier", "predict"]
