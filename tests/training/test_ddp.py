"""Two-process DDP on CPU (gloo): exactly one run, one set of metrics, one split, checkpoints in the run."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from training_support import fast_command
from workbench import jobs


def test_ddp_two_processes_leave_one_run(shapes_dir, runlog):
    cmd = fast_command(name="ddp", epochs=2, trainer={"accelerator": "cpu", "devices": 2, "strategy": "ddp"})
    job = jobs.start_training(cmd, data=shapes_dir, log=runlog)  # multi-process → subprocess job
    assert job.mode == "subprocess"
    res = job.wait(240)
    log_text = (Path(runlog.get(job.run_id)["dir"]) / "job.log").read_text()
    assert res["status"] == "trained", log_text[-3000:]
    assert "GLOBAL_RANK: 1" in log_text  # a second process really trained
    recs = runlog.runs()
    assert len(recs) == 1 and recs[0]["id"] == job.run_id
    rec = runlog.get(job.run_id)
    rows = [m for m in rec["metrics"] if "train_loss" in m]
    steps = Counter(m["step"] for m in rows)
    # 64 training images, 16 per batch, 2 ranks → 2 steps per epoch, each logged once (by rank zero)
    assert len(rows) == 2 * 2 and max(steps.values()) == 1
    assert [e["epoch"] for e in rec["epochs"]] == [0, 1]
    assert rec["summary"]["steps"] == 4
    assert (Path(rec["dir"]) / rec["artifacts"]["checkpoint"]).is_file()
    assert sorted(p.name for p in Path(runlog.runs_dir).iterdir()) == [job.run_id]
