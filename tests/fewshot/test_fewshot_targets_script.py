"""benchmarks/fewshot_targets.py: the numbers it reports are computed from the runs' own records."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fewshot_targets.py"


@pytest.fixture(scope="module")
def targets():
    spec = importlib.util.spec_from_file_location("fewshot_targets", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_first_crossing_is_the_first_validation_row_at_the_target(targets):
    metrics = [{"step": 0, "time": 100.0, "train_loss": 1.0},
               {"step": 250, "time": 160.0, "val_accuracy": 0.90},
               {"step": 500, "time": 220.0, "val_accuracy": 0.951},
               {"step": 750, "time": 280.0, "val_accuracy": 0.97}]
    assert targets.first_crossing(metrics, 0.95) == {"step": 500, "seconds": 120.0, "val_accuracy": 0.951}
    assert targets.first_crossing(metrics, 0.99) is None
    assert targets.first_crossing([], 0.5) is None


def row(acc: float, load: float, seed: int = 0) -> dict:
    return {"seed": seed, "evals": {"5way1shot": {"mean": acc, "ci95": 0.004}}, "loadavg_training": {"mean": load},
            "wall_seconds": 100.0}


def test_summary_over_seeds_reports_mean_spread_and_whether_every_seed_passed(targets):
    s = targets.summarise("maml", 7.2, [row(0.96, 2.0), row(0.94, 3.0), row(0.98, 2.5)])
    assert s["mean"] == pytest.approx(0.96) and (s["min"], s["max"]) == (0.94, 0.98)
    assert s["stdev"] == pytest.approx(0.02)
    assert s["all_seeds_pass"] is False  # 0.94 < 0.95
    assert s["loadavg_training_mean"] == pytest.approx(2.5) and s["wall_seconds"] == 300.0
    one = targets.summarise("protonet", 6.5, [row(0.985, 2.0)])
    assert one["all_seeds_pass"] is True and one["stdev"] == 0.0 and one["target"] == 0.98


def test_the_load_sampler_samples_while_the_body_runs(targets):
    with targets.LoadSampler(every=0.01) as load:
        import time
        time.sleep(0.1)
    s = load.summary()
    assert s["n"] >= 4 and s["max"] >= s["mean"] >= 0.0


def test_append_keeps_the_seeds_already_run_and_refuses_another_budget(targets, tmp_path):
    path = tmp_path / "t.json"
    assert targets.previous_rows(path, "maml", 7.2) == []
    path.write_text(json.dumps(targets.summarise("maml", 7.2, [row(0.96, 2.0, seed=0)])), encoding="utf-8")
    assert [r["seed"] for r in targets.previous_rows(path, "maml", 7.2)] == [0]
    with pytest.raises(SystemExit, match="not 'maml' at 6.5 min"):
        targets.previous_rows(path, "maml", 6.5)
    with pytest.raises(SystemExit, match="holds kind 'maml'"):
        targets.previous_rows(path, "protonet", 7.2)
