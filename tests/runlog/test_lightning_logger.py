"""WorkbenchLogger inside a real Lightning Trainer."""
from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from workbench import WorkbenchLogger


class Tiny(pl.LightningModule):
    def __init__(self, lr: float = 0.1, fail_at: int = -1):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Linear(4, 2)

    def training_step(self, batch, _):
        if self.global_step == self.hparams.fail_at:
            raise RuntimeError("boom at step")
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_accuracy", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def _loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = (x[:, 0] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=8)


def _trainer(logger, **kw):
    return pl.Trainer(logger=logger, max_epochs=2, log_every_n_steps=1, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", **kw)


def test_logger_records_hparams_metrics_epochs_status_and_checkpoint(runlog):
    logger = WorkbenchLogger("tiny", kind="baseline", config={"lr": 0.1}, log=runlog)
    _trainer(logger).fit(Tiny(), _loader(), _loader())
    rec = runlog.get(logger.run_id)
    assert rec["status"] == "trained"
    assert rec["hparams"]["lr"] == 0.1
    losses = [r["train_loss"] for r in rec["metrics"] if "train_loss" in r]
    assert len(losses) == 16  # 8 steps x 2 epochs, one row per optimizer step
    assert [e["epoch"] for e in rec["epochs"]] == [0, 1]
    assert "val_accuracy" in rec["epochs"][-1]
    ckpts = list(Path(rec["dir"]).rglob("*.ckpt"))
    assert ckpts, "checkpoint not under the run's folder"


def test_logger_marks_failed_run(runlog):
    logger = WorkbenchLogger("broken", kind="baseline", log=runlog)
    with pytest.raises(RuntimeError, match="boom"):
        _trainer(logger).fit(Tiny(fail_at=3), _loader())
    rec = runlog.get(logger.run_id)
    assert rec["status"] == "failed"
    assert len([r for r in rec["metrics"] if "train_loss" in r]) == 3


def test_logger_into_existing_run_and_test_phase(runlog):
    run = runlog.start("pre", "baseline", {"lr": 0.1})
    model = Tiny()
    _trainer(WorkbenchLogger(log=runlog, run=run)).fit(model, _loader())
    assert runlog.get(run.id)["status"] == "trained"
    run.set_status("testing")
    test_logger = WorkbenchLogger(log=runlog, run=run.id)
    _trainer(test_logger).validate(model, _loader())
    assert runlog.get(run.id)["status"] == "completed"
    assert len(runlog.find()) == 1
