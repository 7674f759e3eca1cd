"""The typed view of a record, the id rule and the record checks."""
from __future__ import annotations

from datetime import datetime

import pytest

from workbench import RunLogError
from workbench.runlog import RunRecord, new_run_id
from workbench.runlog.records import check_run_id, frame_row, record_problems


def test_typed_view_of_a_few_shot_and_a_baseline_run(runlog):
    fs = runlog.start("proto", "protonet", {"seed": 4, "n_way": 5}, tags=["fewshot"], dataset={"sha256": "ab"})
    fs.finish("completed", summary={"test_accuracy": 0.91, "test_ci95": 0.012, "test_episodes": 600})
    base = runlog.start("cnn", "baseline", {"seed": 1})
    base.finish("completed", summary={"accuracy": 0.8})
    live = runlog.start("live", "baseline", {})

    r = RunRecord.from_dict(runlog.get(fs.id))
    assert (r.id, r.name, r.kind, r.status) == (fs.id, "proto", "protonet", "completed")
    assert r.test_accuracy == 0.91 and r.test_ci95 == 0.012 and r.seed == 4
    assert r.tags == ("fewshot",) and r.dataset == {"sha256": "ab"} and r.config["n_way"] == 5
    assert isinstance(r.created_at, datetime) and r.ended_at >= r.created_at and r.finished
    b = RunRecord.from_dict(runlog.get(base.id, metrics=False))
    assert b.test_accuracy == 0.8 and b.test_ci95 is None and b.seed == 1
    lv = RunRecord.from_dict(runlog.get(live.id, metrics=False))
    assert lv.test_accuracy is None and lv.ended_at is None and not lv.finished
    live.finish()


def test_run_ids_that_can_name_a_folder():
    for ok in (new_run_id(), "a", "20240101-000000-abcdef0123", "run_1.v2"):
        assert check_run_id(ok) == ok
    for bad in ("", ".", "..", "../x", "a/b", "/abs", ".hidden", "x" * 129, 5, None, "a\\b", "a b"):
        with pytest.raises(RunLogError, match="invalid run id"):
            check_run_id(bad)


def test_record_problems_name_each_field():
    good = {"id": "r1", "name": "n", "kind": "baseline", "status": "completed", "created_at": "2024-01-01"}
    assert record_problems(good) == []
    assert record_problems([1]) == ["a record is an object, not list"]
    probs = record_problems({**good, "id": "../x", "pid": "abc", "status": "done", "tags": "a,b",
                             "config": [1], "epochs": [1]})
    text = " | ".join(probs)
    for needle in ("id '../x' is not a valid run id", "pid 'abc' is not an integer", "status 'done' is not one of",
                   "tags 'a,b' is not a list of strings", "config is list, not an object", "epochs is not a list"):
        assert needle in text
    assert record_problems({k: v for k, v in good.items() if k != "id"}) == ["no id"]


def test_frame_row_flattens_groups_and_keeps_short_lists():
    row = frame_row({"id": "r", "tags": ["a", "b"], "config": {"opt": {"lr": 0.1}, "sizes": [1, 2]},
                     "summary": {"per_episode": list(range(50))}, "metrics_summary": {"loss": {"last": 0.5}},
                     "epochs": [{"epoch": 0}], "history": []})
    assert row == {"id": "r", "tags": "a,b", "config.opt.lr": 0.1, "config.sizes": "[1, 2]", "last.loss": 0.5}
