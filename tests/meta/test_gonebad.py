"""Runs gone bad: early calls on loss curves, the Lightning callback, replay over stored runs."""
from __future__ import annotations

import pytest
import torch

from workbench.meta.gonebad import GoneBadCallback, GoneBadDetector, evaluate_detector, label_runs, outcome


def test_exploding_loss_is_flagged_within_the_window(synth):
    planned = 200
    losses = synth.curve(planned, 0.01, seed=1, kind="explode")  # explodes from step 20 on
    det = GoneBadDetector()
    v = det.check(losses, planned)
    assert v.call == "diverged" and v.bad
    assert v.step <= 0.2 * planned, "called within the first 20% of the planned steps"
    assert "minimum" in v.reason and v.planned_steps == planned
    # the detector never looks past the window: the same call from a truncated curve
    assert det.check(losses[: v.step + 1], planned).call == "diverged"
    assert outcome(losses) == "diverged"


def test_nan_is_called_at_once_and_flat_at_the_window_end(synth):
    det = GoneBadDetector()
    nan = synth.curve(100, 0.01, kind="nan")
    v = det.check(nan, 100)
    assert v.call == "diverged" and v.step == 12 and "nan" in v.reason
    flat = synth.curve(100, 0.01, seed=2, kind="flat")
    assert det.check(flat[:10], 100).call == "ok", "flat needs the whole window"
    v = det.check(flat, 100)
    assert v.call == "flat" and v.step == 19 and "fell only" in v.reason
    assert outcome(flat) == "flat"


def test_healthy_run_is_not_flagged(synth):
    det = GoneBadDetector()
    for seed in range(5):
        losses = synth.curve(300, 0.05, seed=seed)
        assert det.check(losses, 300).call == "ok"
        assert outcome(losses) == "ok"


def test_worse_than_median_uses_sibling_curves(synth):
    det = GoneBadDetector()
    slow = synth.curve(100, 0.01, seed=0)
    fast = [synth.curve(100, 0.05, seed=s) for s in range(1, 4)]
    v = det.check(slow, 100, reference=fast)
    assert v.call == "worse_than_median" and "3 sibling runs" in v.reason
    assert det.check(fast[0], 100, reference=[slow, fast[1], fast[2]]).call == "ok"
    assert outcome(slow, 0.5, [0.5, 0.7, 0.8, 0.9]) == "worse_than_median"


def test_detector_settings_are_validated():
    with pytest.raises(ValueError, match="window = 0"):
        GoneBadDetector(window=0)
    with pytest.raises(ValueError, match="explode_factor"):
        GoneBadDetector(explode_factor=0.5)
    with pytest.raises(ValueError, match="planned_steps"):
        GoneBadDetector().check([1.0, 2.0], 0)


def test_replay_over_stored_runs_gives_precision_recall_and_savings(runlog, synth):
    tags = ["sweep:replay"]
    for s in range(6):
        synth.add_run(runlog, f"ok{s}", {"kind": "baseline", "lr": 0.05, "s": s}, synth.curve(100, 0.05, s), 0.9,
                      tags=tags)
    synth.add_run(runlog, "boom", {"kind": "baseline", "lr": 9}, synth.curve(100, 0.05, 7, "explode"), 0.1, tags=tags)
    synth.add_run(runlog, "nan", {"kind": "baseline", "lr": 8}, synth.curve(100, 0.05, 8, "nan"), 0.1, tags=tags)
    synth.add_run(runlog, "flat", {"kind": "baseline", "lr": 0}, synth.curve(100, 0.05, 9, "flat"), 0.1, tags=tags)
    truth = label_runs(runlog.find(tag="sweep:replay"), log=runlog)
    assert sorted(truth.values()).count("ok") >= 3
    assert {truth[r["id"]] for r in runlog.find(name="boom")} == {"diverged"}
    rep = evaluate_detector(runlog.find(tag="sweep:replay"), log=runlog)
    called = dict(zip(rep.frame["name"], rep.frame["call"]))
    assert called["boom"] == "diverged" and called["nan"] == "diverged" and called["flat"] == "flat"
    assert rep.recall >= 0.75 and rep.precision >= 0.6
    assert 0.1 < rep.compute_saved < 0.5  # three bad runs of nine, stopped by 20% of their steps
    assert "precision" in repr(rep)


def _lightning_fit(runlog, lr, steps=60, **cb_kwargs):
    """A real Lightning fit of a linear model (lr=huge explodes) logged through WorkbenchLogger."""
    import pytorch_lightning as pl

    from workbench.runlog.lightning import WorkbenchLogger

    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = x @ torch.randn(8, 1)

    class Reg(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 1)

        def training_step(self, batch, _):
            xb, yb = batch
            loss = torch.nn.functional.mse_loss(self.lin(xb), yb)
            self.log("train_loss", loss, on_step=True, on_epoch=False)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=lr)

    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    cb = GoneBadCallback(**cb_kwargs)
    logger = WorkbenchLogger(f"lr={lr}", kind="baseline", config={"lr": lr}, log=runlog)
    trainer = pl.Trainer(max_steps=steps, logger=logger, callbacks=[cb], enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, log_every_n_steps=1)
    trainer.fit(Reg(), dl)
    return cb, trainer, runlog.get(logger.run_id)


def test_callback_stops_an_exploding_run_and_records_why(runlog):
    cb, trainer, rec = _lightning_fit(runlog, lr=0.9)
    assert cb.stopped and cb.verdict.call == "diverged"
    assert trainer.global_step <= 0.2 * 60 + 1, "stopped within the window"
    assert rec["gone_bad"]["call"] == "diverged" and rec["gone_bad"]["action"] == "stopped"
    assert rec["gone_bad"]["reason"] and "gone-bad:diverged" in rec["tags"]
    assert rec["planned_steps"] == 60


def test_callback_leaves_a_healthy_run_alone_and_flags_without_stopping(runlog):
    cb, trainer, rec = _lightning_fit(runlog, lr=0.05)
    assert not cb.stopped and trainer.global_step == 60
    assert cb.verdict is not None and cb.verdict.call == "ok" and rec["gone_bad"]["action"] == "none"
    cb2, trainer2, rec2 = _lightning_fit(runlog, lr=0.9, stop_on=())
    assert not cb2.stopped and trainer2.global_step == 60  # flagged only
    assert rec2["gone_bad"]["action"] == "flagged" and rec2["gone_bad"]["call"] == "diverged"
    with pytest.raises(ValueError, match="stop_on"):
        GoneBadCallback(stop_on=("exploded",))


def test_callback_reads_sibling_curves_from_a_sweep_tag(runlog, synth):
    for s in range(3):
        synth.add_run(runlog, f"sib{s}", {"kind": "baseline", "s": s}, synth.curve(60, 0.05, s), 0.9,
                      tags=["sweep:sib"])
    synth.add_run(runlog, "unfinished-is-ignored", {"kind": "baseline"}, synth.curve(60, 0.05, 9), 0.9,
                  tags=["sweep:sib"], status="failed")
    cb = GoneBadCallback(reference="sweep:sib", log=runlog)
    curves = cb.reference_curves()
    assert len(curves) == 3 and all(len(c) == 60 for c in curves)
    slow = synth.curve(60, 0.01, seed=5)
    assert GoneBadDetector().check(slow, 60, curves).call == "worse_than_median"
