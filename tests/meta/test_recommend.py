"""Task meta-features, nearest-task retrieval and recommendations with evidence."""
from __future__ import annotations

import pytest

from workbench.meta import TaskIndex, nearest_tasks, recommend, task_features
from workbench.meta.features import SCALAR_KEYS, folder_fingerprint


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
    synth.past_runs(runlog, tasks)
    index = TaskIndex(log=runlog)
    assert len(index) == 3, "one task per dataset folder; unfinished/unscored runs ignored"
    near = nearest_tasks(task_features(tasks["A2"]), index, k=3)
    assert near[0][0].path == str(tasks["A"]) and near[0][1] < near[1][1]
    near = nearest_tasks(task_features(tasks["B2"]), index, k=1)
    assert len(near) == 1 and near[0][0].path == str(tasks["B"])


def test_recommendation_follows_the_nearest_task_with_evidence(runlog, synth, tasks):
    synth.past_runs(runlog, tasks)
    rec = recommend(tasks["A2"], log=runlog, k=2)
    assert rec.command["optimizer"]["params"]["lr"] == 1e-2
    assert "data" not in rec.command, "the new task brings its own data"
    assert "labels" not in rec.command and "name" not in rec.command, "class names belong to the past task"
    ev = rec.neighbours
    assert list(ev.columns)[:3] == ["task", "key", "distance"]
    assert ev["task"].iloc[0] == "A-strokes" and ev["recipe_score"].iloc[0] == pytest.approx(0.9)
    assert ev["weight"].sum() == pytest.approx(1.0) and ev["weight"].iloc[0] > ev["weight"].iloc[1]
    assert "A-strokes" in rec.explain() and rec.data == str(tasks["A2"])
    assert len(rec.candidates) == 3 and rec.candidates["weighted_z"].is_monotonic_decreasing
    rec_b = recommend(tasks["B2"], log=runlog, k=2)
    assert rec_b.command["optimizer"]["params"]["lr"] == 1e-3 and rec_b.neighbours["task"].iloc[0] == "B-blobs"


def test_recommend_leaves_out_the_task_itself(runlog, synth, tasks):
    synth.past_runs(runlog, tasks)
    rec = recommend(tasks["A"], log=runlog, k=3)
    assert "A-strokes" not in set(rec.neighbours["task"]) and len(rec.neighbours) == 2
    rec_self = recommend(tasks["A"], log=runlog, k=1, exclude_self=False)
    assert rec_self.neighbours["task"].iloc[0] == "A-strokes" and rec_self.neighbours["distance"].iloc[0] < 1e-6


def test_empty_log_says_what_to_do(runlog, tasks):
    with pytest.raises(ValueError, match="run a sweep first"):
        recommend(tasks["A"], log=runlog)


def test_leave_one_out_landmarker_equals_scikit_learns():
    """The closed-form leave-one-out nearest-centroid accuracy is scikit-learn's, without N refits."""
    import numpy as np
    from sklearn.model_selection import LeaveOneOut, cross_val_score
    from sklearn.neighbors import NearestCentroid

    from workbench.meta.features import _loo_nearest_centroid

    rng = np.random.default_rng(3)
    for _ in range(4):
        y = np.concatenate([np.repeat(np.arange(5), rng.integers(2, 9, 5)), [5]])  # class 5: one image
        z = rng.normal(size=(len(y), 6)) + 0.4 * y[:, None]
        assert _loo_nearest_centroid(z, y) == cross_val_score(NearestCentroid(), z, y, cv=LeaveOneOut()).mean()
