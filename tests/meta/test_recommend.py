"""Task meta-features, nearest-task retrieval and recommendations with evidence."""
from __future__ import annotations

import pytest

from workbench.meta import TaskIndex, nearest_tasks, recommend, task_features
from workbench.meta.features import SCALAR_KEYS, folder_fingerprint


@pytest.fixture()
def tasks(tmp_path, synth):
    """Three past tasks of different looks plus two new tasks that resemble A and B."""
    f = synth.folder
    return {
        "A": f(tmp_path / "A-strokes", "strokes", n_classes=5, seed=0),
        "B": f(tmp_path / "B-blobs", "blobs", n_classes=4, size=40, seed=0),
        "C": f(tmp_path / "C-noise", "noise", n_classes=3, size=32, seed=0),
        "A2": f(tmp_path / "A2-strokes", "strokes", n_classes=5, seed=1),
        "B2": f(tmp_path / "B2-blobs", "blobs", n_classes=4, size=40, seed=1),
    }


def _cfg(path, lr, bs=32):
    return {"kind": "baseline", "data": str(path), "seed": 0, "batch_size": bs,
            "optimizer": {"name": "Adam", "params": {"lr": lr}}, "model": {"preset": "small_cnn", "params": {}}}


def _past_runs(runlog, synth, tasks):
    """On A (strokes) lr=1e-2 wins, on B (blobs) lr=1e-3 wins, on C it is a tie."""
    table = {"A": {1e-2: 0.9, 1e-3: 0.5, 1e-4: 0.3}, "B": {1e-2: 0.4, 1e-3: 0.9, 1e-4: 0.6},
             "C": {1e-2: 0.6, 1e-3: 0.6, 1e-4: 0.2}}
    for t, scores in table.items():
        for lr, s in scores.items():
            synth.add_run(runlog, f"{t}-lr{lr}", _cfg(tasks[t], lr), [2.0, 1.0], s,
                          dataset={"root": str(tasks[t])})
    # noise the index must ignore: an unfinished run and a run without a score
    r = runlog.start("running", "baseline", _cfg(tasks["A"], 5.0))
    synth.add_run(runlog, "unscored", _cfg(tasks["B"], 5.0), [2.0, 1.0], None)
    return r


def test_meta_features_describe_and_cache(tasks):
    fa = task_features(tasks["A"])
    assert set(fa["scalars"]) == set(SCALAR_KEYS) and len(fa["embedding"]) == 32
    assert fa["n_classes"] == 5 and fa["n_images"] == 40
    assert fa["scalars"]["gray_share"] == 1.0 and fa["scalars"]["aspect"] == 1.0
    fb = task_features(tasks["B"])
    assert fb["scalars"]["gray_share"] == 0.0 and fb["scalars"]["colourfulness"] > 0.02
    assert fb["scalars"]["log_width"] > fa["scalars"]["log_width"]
    # strokes at distinct angles are separable even in a random embedding
    assert fa["scalars"]["nc_accuracy_above_chance"] > 0.3
    assert task_features(tasks["A"]) == fa  # cached: identical
    fp = folder_fingerprint(tasks["A"])
    (tasks["A"] / "class_0" / "img_000.png").unlink()
    assert folder_fingerprint(tasks["A"]) != fp and task_features(tasks["A"])["n_images"] == 39


def test_bad_folders_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        task_features(tmp_path / "nope")
    (tmp_path / "one" / "only").mkdir(parents=True)
    (tmp_path / "one" / "only" / "x.txt").write_text("not an image")
    with pytest.raises(ValueError, match="expected ≥ 2 sub-folders of images"):
        task_features(tmp_path / "one")


def test_nearest_task_retrieval_returns_the_known_neighbour(runlog, synth, tasks):
    _past_runs(runlog, synth, tasks)
    index = TaskIndex(log=runlog)
    assert len(index) == 3, "one task per dataset folder; unfinished/unscored runs ignored"
    near = nearest_tasks(task_features(tasks["A2"]), index, k=3)
    assert near[0][0].path == str(tasks["A"]) and near[0][1] < near[1][1]
    near = nearest_tasks(task_features(tasks["B2"]), index, k=1)
    assert len(near) == 1 and near[0][0].path == str(tasks["B"])


def test_recommendation_follows_the_nearest_task_with_evidence(runlog, synth, tasks):
    _past_runs(runlog, synth, tasks)
    rec = recommend(tasks["A2"], log=runlog, k=2)
    assert rec.command["optimizer"]["params"]["lr"] == 1e-2
    assert "data" not in rec.command, "the new task brings its own data"
    ev = rec.neighbours
    assert list(ev.columns)[:3] == ["task", "key", "distance"]
    assert ev["task"].iloc[0] == "A-strokes" and ev["recipe_score"].iloc[0] == pytest.approx(0.9)
    assert ev["weight"].sum() == pytest.approx(1.0) and ev["weight"].iloc[0] > ev["weight"].iloc[1]
    assert "A-strokes" in rec.explain() and rec.data == str(tasks["A2"])
    assert len(rec.candidates) == 3 and rec.candidates["weighted_z"].is_monotonic_decreasing
    rec_b = recommend(tasks["B2"], log=runlog, k=2)
    assert rec_b.command["optimizer"]["params"]["lr"] == 1e-3 and rec_b.neighbours["task"].iloc[0] == "B-blobs"


def test_recommend_leaves_out_the_task_itself(runlog, synth, tasks):
    _past_runs(runlog, synth, tasks)
    rec = recommend(tasks["A"], log=runlog, k=3)
    assert "A-strokes" not in set(rec.neighbours["task"]) and len(rec.neighbours) == 2
    rec_self = recommend(tasks["A"], log=runlog, k=1, exclude_self=False)
    assert rec_self.neighbours["task"].iloc[0] == "A-strokes" and rec_self.neighbours["distance"].iloc[0] < 1e-6


def test_empty_log_says_what_to_do(runlog, tasks):
    with pytest.raises(ValueError, match="run a sweep first"):
        recommend(tasks["A"], log=runlog)
