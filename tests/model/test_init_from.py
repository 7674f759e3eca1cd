"""``init_from``: a run starts from a past run's weights — shape-matching load, head rule,
freezing, lineage in the record, bad parents refused before a run exists, across kinds."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model_support import GLYPHS, conv4_command, fast_command, protonet_command
from workbench import training
from workbench.learners.loading import load_learner
from workbench.nets.transfer import sha256
from workbench.nets.weights import load_checkpoint
from workbench.registry import ConfigError


def _state(log, run_id, which="checkpoint"):
    rec = log.get(run_id, metrics=False)
    return load_checkpoint(Path(rec["dir"]) / rec["artifacts"][which])["state_dict"]


@pytest.fixture(scope="module")
def parent(tmp_path_factory, shapes_dir):
    """A trained 4-class baseline run (and its log)."""
    from workbench.runlog import RunLog

    log = RunLog(tmp_path_factory.mktemp("parent") / "runs.json")
    res = training.run_training(fast_command(name="parent", epochs=2), shapes_dir, log=log)
    return log, res["run_id"]


def test_same_labels_load_everything_and_the_lineage_says_so(parent, shapes_dir):
    log, pid = parent
    res = training.run_training(fast_command(name="child", epochs=1, init_from="parent"), shapes_dir, log=log)
    rec = log.get(res["run_id"], metrics=False)
    lin = rec["lineage"]
    prec = log.get(pid, metrics=False)
    assert lin["parent"] == pid and lin["parent_name"] == "parent" and lin["parent_kind"] == "baseline"
    assert lin["checkpoint"] == prec["artifacts"]["checkpoint"]
    assert lin["sha256"] == sha256(Path(prec["dir"]) / lin["checkpoint"])  # reproducible: which file exactly
    assert rec["config"]["init_from"]["run"] == pid, "a name is stored as the id it meant"
    assert lin["reinitialised"] == [] and lin["head_reason"] == "loaded from the parent"
    assert set(lin["loaded"]) == set(_state(log, pid))


def test_other_labels_reinitialise_the_head_and_record_why(parent, three_shapes):
    log, pid = parent
    ps = _state(log, pid)
    res = training.run_training(fast_command(name="three", epochs=1, init_from={"run": pid, "freeze_epochs": 1}),
                                three_shapes, log=log)
    rec = log.get(res["run_id"], metrics=False)
    lin = rec["lineage"]
    assert lin["head"] == ["model.7.weight", "model.7.bias"]
    assert set(lin["reinitialised"]) == set(lin["head"]) and "4 outputs in the parent, 3 here" in lin["head_reason"]
    assert lin["shape_mismatch"]["model.7.weight"] == [[3, 32], [4, 32]]
    # frozen for the one epoch it trained: the loaded tensors are the parent's, the new head moved
    cs = _state(log, res["run_id"], "last_checkpoint")
    for name in lin["loaded"]:
        assert torch.equal(cs[name], ps[name]), name
    from workbench.provenance import lineage_text

    assert "frozen for 1 epochs" in lineage_text(rec) and "re-initialised 2" in lineage_text(rec)


def test_freezing_ends_after_its_epochs(parent, shapes_dir):
    log, pid = parent
    ps = _state(log, pid)
    res = training.run_training(fast_command(name="thaw", epochs=2, init_from={"run": pid, "freeze_epochs": 1,
                                                                              "head": "reinit"}),
                                shapes_dir, log=log)
    lin = log.get(res["run_id"], metrics=False)["lineage"]
    assert "head: reinit" in lin["head_reason"] and "model.7.weight" not in lin["loaded"]
    cs = _state(log, res["run_id"], "last_checkpoint")
    assert any(not torch.equal(cs[n], ps[n]) for n in lin["loaded"]), "the second epoch trains the loaded layers"


def test_bad_parents_fail_before_a_run_exists(parent, shapes_dir):
    log, pid = parent
    before = len(log.runs())
    with pytest.raises(ConfigError, match="init_from.run: no run with id or name 'nobody'"):
        training.run_training(fast_command(init_from="nobody"), shapes_dir, log=log)
    other = fast_command(init_from=pid, model={"preset": "small_cnn", "params": {"hidden": 4}})
    with pytest.raises(ConfigError, match=r"init_from.run: no tensor of run .* fits this model \(no tensor names"):
        training.run_training(other, shapes_dir, log=log)
    narrow = fast_command(init_from={"run": pid, "head": "reinit"})
    for i, width in ((0, 8), (3, 12)):
        narrow["model"]["layers"][i]["params"]["out_channels"] = width
    with pytest.raises(ConfigError, match=r"fits this model \(e\.g\. model\.0\.weight is \[8, 3, 3, 3\] here and"
                                          r" \[16, 3, 3, 3\] there\)"):
        training.run_training(narrow, shapes_dir, log=log)
    with pytest.raises(ConfigError, match="init_from.freeze_epochs: expected an integer ≥ 0"):
        training.run_training(fast_command(init_from={"run": pid, "freeze_epochs": -1}), shapes_dir, log=log)
    assert len(log.runs()) == before


def test_a_changed_parent_checkpoint_fails_the_child_not_silently(parent, shapes_dir, tmp_path):
    """The record promises which weights it started from (SHA-256); if they change before the job
    trains, the run fails saying so instead of training from other weights."""
    import shutil

    log, pid = parent
    prepared = training.prepare(fast_command(name="late", epochs=1, init_from=pid), shapes_dir)
    run = training.create_run(log, prepared, status="queued")
    ck = Path(log.get(pid, metrics=False)["dir"]) / log.get(run.id, metrics=False)["lineage"]["checkpoint"]
    shutil.copy(ck, tmp_path / "keep.ckpt")
    try:
        state = load_checkpoint(ck)
        state["state_dict"]["model.0.weight"] += 1
        torch.save(state, ck)
        with pytest.raises(RuntimeError, match="changed or is gone since this run was created"):
            training.run_training(prepared.command, shapes_dir, log=log, run=run.id, prepared=prepared)
        assert log.get(run.id, metrics=False)["status"] == "failed"
    finally:
        shutil.copy(tmp_path / "keep.ckpt", ck)


def test_few_shot_and_baseline_conv4_initialise_each_other(tmp_path, runlog):
    """Conv-4 on both sides: a baseline classifier's features start a ProtoNet, and back."""
    from workbench.data.glyphs import load_glyphs
    from workbench.meta.tasks import glyph_task

    load_glyphs(**GLYPHS)
    folder = glyph_task("Cyrillic", n_classes=4, per_class=10, root=tmp_path / "cyr")
    base = training.run_training(conv4_command(name="base", epochs=1), folder, log=runlog)
    proto = training.run_training(protonet_command(init_from="base", test_episodes=0), log=runlog)
    lin = runlog.get(proto["run_id"], metrics=False)["lineage"]
    bs = _state(runlog, base["run_id"])
    assert lin["parent_kind"] == "baseline" and lin["head_reason"].startswith("no head")
    assert len(lin["loaded"]) == 4 * 7  # 4 blocks × (conv weight, bias; BN weight, bias, mean, var, count)
    assert all(n.startswith("encoder.features.") for n in lin["loaded"])
    module, _ = load_learner(runlog.get(proto["run_id"], metrics=False))
    assert module.encoder.features[0][0].weight.shape == bs["model.features.0.0.weight"].shape
    back = training.run_training(conv4_command(name="back", epochs=1, init_from={"run": proto["run_id"],
                                                                                 "freeze_epochs": 1}),
                                 folder, log=runlog)
    lin2 = runlog.get(back["run_id"], metrics=False)["lineage"]
    assert lin2["head"] == ["model.head.weight", "model.head.bias"] and set(lin2["head"]) <= set(lin2["reinitialised"])
    assert "another kind of learner" in lin2["head_reason"]
    ps, cs = _state(runlog, proto["run_id"]), _state(runlog, back["run_id"], "last_checkpoint")
    assert torch.equal(cs["model.features.2.0.weight"], ps["encoder.features.2.0.weight"])


def test_maml_freezes_loaded_tensors_by_steps(runlog):
    """MAML's functional inner loop needs every tensor to require grad: freezing drops their
    meta-gradients instead, for ``freeze_steps`` optimizer steps."""
    maml = {**protonet_command(kind="maml", name="maml", steps=2, test_episodes=0), "maml": {"inner_steps": 1}}
    first = training.run_training(maml, log=runlog)
    ps = _state(runlog, first["run_id"], "last_checkpoint")
    child = training.run_training({**maml, "name": "maml-child", "steps": 3,
                                   "init_from": {"run": first["run_id"], "freeze_steps": 3, "checkpoint": "last"}},
                                  log=runlog)
    lin = runlog.get(child["run_id"], metrics=False)["lineage"]
    assert lin["head_reason"] == "loaded from the parent" and lin["reinitialised"] == []
    cs = _state(runlog, child["run_id"], "last_checkpoint")
    assert all(torch.equal(cs[n], ps[n]) for n in lin["loaded"])


def test_runs_show_and_the_runs_panel_show_the_lineage(parent, shapes_dir, capsys):
    from workbench.cli import main
    from workbench.widgets.runs import RunsPanel

    log, pid = parent
    kid = training.run_training(fast_command(name="shown", epochs=1, init_from={"run": pid, "freeze_steps": 2}),
                                shapes_dir, log=log)["run_id"]
    assert main(["runs", "show", kid, "--db", str(log.path)]) == 0
    out = capsys.readouterr().out
    assert f"lineage: from parent ({pid}, baseline), best checkpoint sha256 " in out
    assert "loaded tensors frozen for 2 steps" in out
    assert main(["runs", "show", pid, "--db", str(log.path)]) == 0
    assert f"shown ({kid})" in capsys.readouterr().out.split("children:")[1]
    panel = RunsPanel(log)
    panel.select([kid])
    assert f"from parent ({pid}, baseline)" in panel.details.value
