"""The recommender proposes a starting model: the most related past run whose network fits."""
from __future__ import annotations

from model_support import GLYPHS, conv4_command, fast_command
from workbench import training
from workbench.meta import recommend


def test_the_nearest_tasks_best_fitting_run_is_proposed_with_its_evidence(shapes_dir, runlog, tmp_path):
    from workbench.data.glyphs import load_glyphs
    from workbench.meta.tasks import glyph_task

    load_glyphs(**GLYPHS)
    latin = glyph_task("Latin", n_classes=4, per_class=10, root=tmp_path / "latin")
    greek = glyph_task("Greek", n_classes=4, per_class=10, root=tmp_path / "greek")
    photo = training.run_training(fast_command(name="shapes", epochs=1), shapes_dir, log=runlog)["run_id"]
    weak = training.run_training(conv4_command(name="latin-weak", epochs=1, optimizer={"name": "SGD", "params": {
        "lr": 1e-5}}), latin, log=runlog)["run_id"]
    good = training.run_training(conv4_command(name="latin", epochs=3), latin, log=runlog)["run_id"]
    rec = recommend(greek, log=runlog, k=2)
    assert rec.neighbours["task"].iloc[0] == "latin"
    start = rec.init_from
    scores = {r["id"]: r for r in runlog.runs()}
    best = max((weak, good), key=lambda i: scores[i]["summary"]["final_val_accuracy"])
    assert start["run"] == best and start["task"] == "latin" and start["kind"] == "baseline"
    assert "same network and input (1×28×28)" in start["why"] and start["run"] != photo
    assert f"Start from run {start['name']} ({best})" in rec.explain()
    job = rec.start(greek, init_from=True, log=runlog)
    job.wait(120)
    lin = runlog.get(job.run_id, metrics=False)["lineage"]
    assert lin["parent"] == best and len(lin["loaded"]) > 20


def test_no_proposal_without_a_checkpoint_that_fits(shapes_dir, runlog, tmp_path):
    from workbench.meta.recommend import starting_model
    from workbench.meta.tasks import glyph_task

    training.run_training(fast_command(name="shapes", epochs=1), shapes_dir, log=runlog)
    other = glyph_task("Latin", n_classes=3, per_class=8, root=tmp_path / "latin3")
    rec = recommend(other, log=runlog, k=1)
    assert rec.init_from is not None and rec.init_from["name"] == "shapes"  # its own recipe fits itself
    assert starting_model([(t, 0.0) for t in []], rec.command) is None
    cmd = dict(rec.command, model={"preset": "conv4"}, channels=1, image_size=28)
    from workbench.meta.recommend import TaskIndex

    near = [(t, 1.0) for t in TaskIndex(log=runlog).tasks.values()]
    assert starting_model(near, cmd) is None, "a Conv-4 command does not start from a layer-list network"
