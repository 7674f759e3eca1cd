"""The baseline image classifier as a LightningModule, and ``predict`` for trained runs.

Logged metrics (what the run log and the panels read):
``train_loss`` every step, ``val_loss`` / ``val_accuracy`` every epoch, and on test
``test_loss``, ``test_accuracy``, ``test_top{k}_accuracy`` plus ``self.test_results``
(per-class accuracy and the confusion matrix) for the jobs layer to store.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import pytorch_lightning as pl
import torch

from ..config import TrainingCommand, build_component
from ..nets.builder import build_model
from .. import registry


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
        self.command = TrainingCommand.from_dict(command)
        self.classes = list(classes)
        self.model = build_model(self.command.model, n_labels=len(self.classes), in_shape=tuple(in_shape))
        self.criterion = build_component(self.command.criterion, registry.losses(), "criterion", "loss")
        self.test_results: dict[str, Any] | None = None
        self._test_logits: list[torch.Tensor] = []
        self._test_targets: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.criterion(logits, y)
        self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        loss = self.criterion(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(y))
        self.log("val_accuracy", acc, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(y))

    def on_test_epoch_start(self) -> None:
        self._test_logits, self._test_targets = [], []

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
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
    """Accuracy, top-k accuracy, per-class accuracy and the confusion matrix (rows = true class)."""
    n = len(classes)
    k = max(1, min(int(top_k), n))
    preds = logits.argmax(1) if len(targets) else torch.zeros(0, dtype=torch.long)
    conf = torch.zeros(n, n, dtype=torch.long)
    for t, p in zip(targets.tolist(), preds.tolist()):
        conf[t, p] += 1
    total = int(len(targets))
    acc = float((preds == targets).float().mean()) if total else float("nan")
    topk = float((logits.topk(k, dim=1).indices == targets[:, None]).any(1).float().mean()) if total else float("nan")
    per_class = {}
    for i, c in enumerate(classes):
        row = int(conf[i].sum())
        per_class[c] = float(conf[i, i]) / row if row else None
    return {"accuracy": acc, "top_k": k, "top_k_accuracy": topk, "per_class_accuracy": per_class,
            "confusion_matrix": conf.tolist(), "classes": list(classes), "n_test": total}


def load_classifier(run_ref: str, log: Any = None, checkpoint: str | None = None) -> tuple[ImageClassifier, dict]:
    """Reload a trained run's classifier (best checkpoint unless ``checkpoint`` is given) and its record."""
    from ..runlog import RunLog, RunLogError

    log = log or RunLog()
    rec = log.get(run_ref, metrics=False)
    arts = rec.get("artifacts") or {}
    ckpt = checkpoint or arts.get("checkpoint") or arts.get("last_checkpoint")
    if not ckpt:
        raise RunLogError(f"run {rec['id']} ({rec.get('name')}) has no checkpoint (status {rec.get('status')})")
    p = Path(ckpt)
    if not p.is_absolute():
        p = Path(rec["dir"]) / p
    model = ImageClassifier.load_from_checkpoint(str(p), map_location="cpu", weights_only=False)
    model.eval()
    return model, rec


def predict(run: str | Mapping[str, Any], images: Sequence[Any], log: Any = None,
            top: int = 1) -> list[dict[str, Any]]:
    """Classify new images (paths or PIL images) with a trained run.

    Returns one dict per image: ``label``, ``probability`` and the ``top`` (label, probability) pairs.
    The images go through the run's own preprocessing (mode, PIL ops, size, eval transforms).
    """
    from ..data.imagefolder import build_transform, load_image

    ref = run["id"] if isinstance(run, Mapping) else run
    model, _ = load_classifier(ref, log)
    cmd = model.command
    tf = build_transform(cmd.eval_transforms, "eval_transforms")
    xs = []
    for im in images:
        x = torch.from_numpy(load_image(im, cmd.channels, cmd.image_hw, cmd.pil_ops))
        if tf is not None:
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
