"""Issue 12, "opening a run executes code": every way of opening a run, against crafted run folders.

A colleague's run folder, or a shared ``WORKBENCH_HOME``, is attacker-controlled input. The
attacks, each for real: a checkpoint whose pickle runs ``open(marker, "w")`` when unpickled; a
record whose ``artifacts.checkpoint`` is ``../../elsewhere.ckpt`` or an absolute path; a symlink
in the run folder (or the run folder itself) pointing out; hyperparameters that claim a model of
a billion outputs; a backbone ``weights_path`` that no longer exists. The ways in: ``workbench
test RUN`` (CLI and API), ``predict()``, few-shot ``adapt()`` / ``evaluate()`` / testing, the runs panel.
"""
from __future__ import annotations

import importlib
import io
import os
import shutil
import subprocess
import sys

import pytest
import torch

from command_corpus import BASELINE
from hostile_runs import an_image, clone, outside_checkpoint, poison


def _evaluate():
    """``evaluate()`` of few-shot runs (before the runner merge it lived in workbench.learners.fewshot)."""
    for name in ("workbench.fewshot", "workbench.learners.fewshot"):
        try:
            return importlib.import_module(name).evaluate
        except (ImportError, AttributeError):
            continue
    raise ImportError("no few-shot evaluate()")


def _open(entry: str, log, rid: str, folders) -> None:
    """Open run ``rid`` the way ``entry`` does (raises what that way raises)."""
    import workbench
    from workbench import jobs

    if entry == "test":
        jobs.run_test(rid, log=log)
    elif entry == "cli-test":
        proc = subprocess.run([sys.executable, "-m", "workbench", "test", rid, "--db", str(log.path)],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed")
    elif entry == "predict":
        workbench.predict(rid, [an_image(folders)], log=log)
    elif entry == "adapt":
        support = torch.rand(4, 1, 16, 16)
        workbench.adapt(rid, support, ["a", "a", "b", "b"], log=log)
    elif entry == "evaluate":
        _evaluate()(rid, episodes=2, log=log)
    elif entry == "fewshot-test":
        jobs.run_test(rid, log=log, limit=2)
    else:
        raise AssertionError(entry)


ENTRIES = [("baseline", "test"), ("baseline", "cli-test"), ("baseline", "predict"), ("fewshot", "adapt"),
           ("fewshot", "evaluate"), ("fewshot", "fewshot-test"), ("fewshot", "cli-test")]


@pytest.mark.parametrize("kind, entry", ENTRIES, ids=[f"{k}-{e}" for k, e in ENTRIES])
def test_a_pickle_payload_in_the_checkpoint_never_runs(kind, entry, trained, folders, tmp_path):
    log, rid, folder = clone(trained, kind, tmp_path / "home")
    marker = tmp_path / "PWNED"
    assert poison(folder, marker) >= 1
    with pytest.raises(Exception) as info:
        _open(entry, log, rid, folders)
    assert not marker.exists(), f"{entry} ran the checkpoint's payload"
    assert "pickled objects (io.open)" in str(info.value)  # builtins.open pickles as io.open
    assert log.get(rid, metrics=False)["status"] == "trained"  # refusing to open it did not mark it failed


ATTACKS = ("dotdot", "absolute", "symlinked-file", "symlinked-folder")


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("entry", ("test", "predict"))
def test_artifact_paths_leading_outside_the_run_folder_are_refused(attack, entry, trained, folders, tmp_path):
    log, rid, folder = clone(trained, "baseline", tmp_path / "home")
    elsewhere = outside_checkpoint(folder, tmp_path / "elsewhere" / "elsewhere.ckpt")
    run = log.handle(rid)
    arts = dict(log.get(rid, metrics=False)["artifacts"])
    if attack == "dotdot":
        arts["checkpoint"] = os.path.relpath(elsewhere, folder)  # ../../../elsewhere/elsewhere.ckpt
    elif attack == "absolute":
        arts["checkpoint"] = str(elsewhere)
    elif attack == "symlinked-file":
        ck = folder / arts["checkpoint"]
        ck.unlink()
        ck.symlink_to(elsewhere)
    else:  # the run folder itself is a link to a folder elsewhere that holds a checkpoint
        moved = tmp_path / "elsewhere" / "run"
        shutil.move(str(folder), moved)
        folder.symlink_to(moved, target_is_directory=True)
    run.update(artifacts=arts)
    with pytest.raises(ValueError, match="outside its folder|not a path inside its folder|is a symlink"):
        _open(entry, log, rid, folders)
    assert not (tmp_path / "elsewhere" / "test_report.json").exists()
    assert not (tmp_path / "elsewhere" / "run" / "test_report.json").exists()


def test_hyperparameters_claiming_a_huge_model_are_refused_without_allocating_it(trained, folders, tmp_path):
    log, rid, folder = clone(trained, "baseline", tmp_path / "home")
    for p in folder.rglob("*.ckpt"):
        ck = torch.load(p, map_location="cpu", weights_only=True)
        cmd = ck["hyper_parameters"]["command"]
        cmd["model"]["layers"].insert(4, {"name": "Linear", "params": {"in_features": "auto",
                                                                     "out_features": 10 ** 9}})
        torch.save(ck, p)  # 2.6e11 parameters claimed, the same few thousand weights held
    with pytest.raises(ValueError, match="do not fit"):
        _open("predict", log, rid, folders)


def test_a_backbone_weights_file_named_by_the_command_is_not_read_when_opening(folders, tmp_path):
    """A run trained from local pretrained weights opens on a machine where that file is gone
    (or was swapped for another): the checkpoint holds the trained weights."""
    from workbench import RunLog, predict
    from workbench.learners.classifier import ImageClassifier

    pretrained = tmp_path / "pretrained.pth"
    from torchvision.models import resnet18

    torch.save(resnet18(weights=None).state_dict(), pretrained)
    cmd = {**BASELINE, "model": {"preset": "resnet18", "params": {"weights_path": str(pretrained)}}}
    log = RunLog(tmp_path / "home" / "runs.json")
    module = ImageClassifier(cmd, ["circle", "cross", "square", "triangle"], [3, 16, 16])
    run = log.start("pretrained", "baseline", module.hparams["command"])
    (run.dir / "checkpoints").mkdir()
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)},
               run.dir / "checkpoints" / "last.ckpt")
    run.finish("trained", artifacts={"checkpoint": "checkpoints/last.ckpt"})
    pretrained.unlink()  # the colleague's file is not on this machine
    out = predict(run.id, [an_image(folders)], log=log)
    assert out[0]["label"] in module.classes


def test_a_torn_or_foreign_checkpoint_is_a_clear_error(trained, folders, tmp_path):
    log, rid, folder = clone(trained, "baseline", tmp_path / "home")
    cks = list(folder.rglob("*.ckpt"))
    cks[0].write_bytes(cks[0].read_bytes()[: 500])  # torn mid-write
    for p in cks[1:]:
        p.write_text("not a checkpoint")
    for entry in ("test", "predict"):
        with pytest.raises(ValueError, match="not a readable checkpoint"):
            _open(entry, log, rid, folders)
    assert log.get(rid, metrics=False)["status"] == "trained"


def _deflate(path) -> None:
    """Rewrite a zip checkpoint with every record deflated (what torch.load happily inflates)."""
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            z.writestr(info.filename, src.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)


def test_a_compressed_checkpoint_is_refused_before_it_is_inflated(trained, folders, tmp_path):
    """torch.save stores records raw; torch.load inflates deflated ones, so a 64 KB file became a
    64 MB tensor (1 MB → 1 GB): a compressed record is refused before anything is read."""
    from workbench.nets.weights import CheckpointError, load_checkpoint

    bomb = tmp_path / "bomb.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(16 << 20)}}, bomb)
    _deflate(bomb)
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(CheckpointError, match=r"is compressed \(.* that inflate to 67,108,864\)"):
        load_checkpoint(bomb)

    log, rid, folder = clone(trained, "baseline", tmp_path / "home")
    for p in folder.rglob("*.ckpt"):
        _deflate(p)
    for entry in ("test", "predict"):
        with pytest.raises(ValueError, match="is compressed"):
            _open(entry, log, rid, folders)
    assert log.get(rid, metrics=False)["status"] == "trained"


def test_the_runs_panel_shows_hostile_runs_without_opening_their_files(trained, folders, tmp_path):
    from workbench.widgets.runs import RunsPanel

    log, rid, folder = clone(trained, "baseline", tmp_path / "home")
    marker = tmp_path / "PWNED"
    poison(folder, marker)
    log.handle(rid).update(artifacts={"checkpoint": "../../../../etc/passwd"}, name="<script>alert(1)</script>")
    panel = RunsPanel(log)
    panel.select([rid])
    assert not marker.exists()
    assert "<script>" not in panel.table.value and "<script>" not in panel.details.value
    assert "&lt;script&gt;" in panel.details.value


def test_a_poisoned_run_can_be_neither_resumed_nor_started_from(trained, folders, tmp_path):
    """Issue 15's ways of reading another run's checkpoint: ``jobs.resume`` (a stopped run) and
    ``init_from`` (a parent run). Neither runs the payload, and neither leaves a changed record."""
    from workbench import jobs, training

    log, rid, folder = clone(trained, "baseline", tmp_path / "home", status="stopped")
    marker = tmp_path / "PWNED"
    assert poison(folder, marker) >= 1
    with pytest.raises(ValueError, match=r"pickled objects \(io\.open\)"):
        training.resume_training(rid, log=log)
    res = jobs.resume(rid, log=log).wait(60)  # the background job: the same refusal, the record unchanged
    assert "pickled objects" in res["error"] and log.get(rid, metrics=False)["status"] == "stopped"
    n = len(log.runs())
    with pytest.raises(ValueError, match=r"pickled objects \(io\.open\)"):
        jobs.start_training({**BASELINE, "init_from": rid}, data=str(folders["baseline"]), log=log)
    assert len(log.runs()) == n and not marker.exists()
