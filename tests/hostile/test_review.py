"""Hostile review of the merged product (issue 12's method, round 2): what a careless user or an
attacker with a shared ``WORKBENCH_HOME`` can do to a *finished* run and to the caches.

- testing never costs a run its training: a failed test puts it back where it was (with
  ``test_error``), a run trained on a GPU is tested on this CPU-only machine;
- the files a test reads and writes in the run folder (``split.json``, ``test_report.json``) stay
  inside it, and a crafted one is a clear error before the record changes;
- a decoded-image cache of the wrong dtype planted in ``cache/images`` is not trained on.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from command_corpus import BASELINE
from hostile_runs import clone


def _retarget(log, rid: str, folder: Path, **trainer) -> None:
    """Rewrite the run's command (record and checkpoints) as if trained with other trainer options."""
    rec = log.get(rid, metrics=False)
    cfg = {**rec["config"], "trainer": {**rec["config"]["trainer"], **trainer}}
    log.handle(rid).update(config=cfg)
    for p in folder.rglob("*.ckpt"):
        ck = torch.load(p, map_location="cpu", weights_only=True)
        ck["hyper_parameters"]["command"] = cfg
        torch.save(ck, p)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_run_trained_on_a_gpu_is_tested_on_this_cpu_machine(trained, tmp_path):
    from workbench import jobs

    log, rid, folder = clone(trained, "baseline", tmp_path / "home")
    _retarget(log, rid, folder, accelerator="gpu")
    res = jobs.run_test(rid, log=log)
    assert res["status"] == "completed" and log.get(rid, metrics=False)["status"] == "completed"


def test_a_failed_test_puts_the_run_back_where_it_was(trained, folders, tmp_path):
    from workbench import jobs

    log, rid, folder = clone(trained, "baseline", tmp_path / "home")
    data = tmp_path / "copy"
    shutil.copytree(folders["baseline"], data)
    split = json.loads((folder / "split.json").read_text())
    for rel in split["test"]:
        (data / rel).write_bytes(b"not a png")  # every held-out image is broken
    log.handle(rid).update(dataset={**log.get(rid, metrics=False)["dataset"], "root": str(data)})
    with pytest.raises(Exception, match="cannot identify image"):
        jobs.run_test(rid, log=log)
    rec = log.get(rid, metrics=False)
    assert rec["status"] == "trained" and "UnidentifiedImageError" in rec["test_error"]
    shutil.rmtree(data)
    shutil.copytree(folders["baseline"], data)  # fixed: the same run tests fine now
    assert jobs.run_test(rid, log=log)["status"] == "completed"
    assert log.get(rid, metrics=False).get("test_error") is None


@pytest.mark.parametrize("attack", ("symlink-out", "not-a-split", "huge-nesting"))
def test_a_crafted_split_file_is_refused_before_the_record_changes(attack, trained, tmp_path):
    from workbench import jobs

    log, rid, folder = clone(trained, "baseline", tmp_path / "home")
    split = folder / "split.json"
    if attack == "symlink-out":
        outside = tmp_path / "outside.json"
        outside.write_text(split.read_text())
        split.unlink()
        split.symlink_to(outside)
    elif attack == "not-a-split":
        split.write_text(json.dumps(["../../../../etc/passwd"]))
    else:
        split.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="outside its folder|not a split|not valid JSON"):
        jobs.run_test(rid, log=log)
    assert log.get(rid, metrics=False)["status"] == "trained"


def test_a_planted_test_report_link_is_refused_and_its_target_untouched(trained, tmp_path):
    from workbench import jobs

    log, rid, folder = clone(trained, "baseline", tmp_path / "home")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (folder / "test_report.json").symlink_to(victim)
    with pytest.raises(ValueError, match="outside its folder"):
        jobs.run_test(rid, log=log)
    assert victim.read_text() == "precious"
    assert log.get(rid, metrics=False)["status"] == "trained"


def test_a_planted_cache_of_the_wrong_dtype_is_not_trained_on(folders):
    from workbench.commands import parse
    from workbench.data.imagefolder import ImageFolderDataModule

    cmd = parse(BASELINE)
    dm = ImageFolderDataModule(folders["baseline"], cmd)
    dm.cache.fill()
    assert dm.cache.path.is_file()
    np.save(dm.cache.path, np.full(dm.cache.array.shape, 1e6, dtype=np.float64))  # same shape, poisoned
    again = ImageFolderDataModule(folders["baseline"], cmd)
    assert again.cache.n_filled == 0 and again.cache.array.dtype == np.uint8
    x, _ = again.dataset("train")[0]
    assert float(x.max()) <= 1.0


@pytest.mark.parametrize("fname", ("../secret.png", "/ABSOLUTE"), ids=("dotdot", "absolute"))
def test_a_dataset_manifest_never_names_files_outside_its_folder(fname, tmp_path):
    """mini-ImageNet's csv files name the images: a row pointing out of the folder is refused."""
    from PIL import Image

    from workbench.data.omniglot import miniimagenet_source

    root = tmp_path / "mini"
    (root / "images").mkdir(parents=True)
    secret = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(secret)
    fname = str(secret) if fname == "/ABSOLUTE" else fname
    for split, lab in (("train", "a"), ("val", "b"), ("test", "c")):
        Image.new("RGB", (8, 8)).save(root / "images" / f"{lab}.png")
        rows = [f"{lab}.png,{lab}"] + ([f"{fname},{lab}"] if split == "test" else [])
        (root / f"{split}.csv").write_text("filename,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match="not a file inside"):
        miniimagenet_source(root, image_size=8)


@pytest.mark.parametrize("damage", ("torn", "poisoned", "bomb"))
def test_a_damaged_glyph_cache_is_regenerated(damage):
    """The glyph benchmark's cache file torn (a foreign or half-copied file) or holding other pixels
    under the right fingerprint, or a decompression bomb (64 MB of zeros in 70 KB): the benchmark is
    regenerated, never failed on, trained on or inflated."""
    from workbench.data import glyphs

    key = dict(alphabets=["Latin"], max_per_alphabet=2)
    good = glyphs.load_glyphs(**key)
    path = glyphs._cache_path(0, key["alphabets"], key["max_per_alphabet"], glyphs.INSTANCES)
    assert path.is_file()
    if damage == "torn":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "bomb":  # 64 MB of zeros under 70 KB: np.load would inflate all of it
        import zipfile

        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z, z.open("images.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (64 << 20,)})
            for _ in range(64):
                f.write(bytes(1 << 20))
        assert path.stat().st_size < 1 << 20
        import tracemalloc

        tracemalloc.start()
        try:
            again = glyphs.load_glyphs(**key)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 16 << 20, f"{peak:,} bytes allocated: the bomb was inflated"  # numpy reports to tracemalloc
        assert (again.images == good.images).all()
        return
    else:
        np.savez_compressed(path, images=np.zeros_like(good.images), classes=np.array(good.classes),
                            alphabets=np.array(good.alphabets), chars=np.array(good.chars),
                            sha1=np.array(good.meta["sha1"]))
    again = glyphs.load_glyphs(**key)
    assert (again.images == good.images).all() and again.meta["sha1"] == good.meta["sha1"]


def test_caches_never_write_through_a_link_planted_under_a_temp_name(folders, tmp_path):
    """In a shared cache a colleague can plant a link where the old code put its temp file
    (a predictable name: pid, thread id); the cache writers use fresh mkstemp names now."""
    import os
    import threading

    from workbench.commands import parse
    from workbench.data import glyphs
    from workbench.data.imagefolder import ImageFolderDataModule

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    cmd = parse({**BASELINE, "image_size": 12})  # a cache key no other test writes
    dm = ImageFolderDataModule(folders["baseline"], cmd)
    path = dm.cache.path
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp").symlink_to(victim)
    key = dict(alphabets=["Greek"], max_per_alphabet=2)
    gpath = glyphs._cache_path(0, key["alphabets"], key["max_per_alphabet"], glyphs.INSTANCES)
    gpath.with_suffix(f".tmp{os.getpid()}.npz").symlink_to(victim)
    dm.cache.fill()
    glyphs.load_glyphs(**key)
    assert victim.read_text() == "precious"
    assert np.load(path).shape == dm.cache.array.shape and gpath.is_file()


def test_a_linked_manifest_is_not_read_for_duplicate_groups(folders, tmp_path):
    """A dataset folder whose manifest.jsonl links to /dev/zero (endless) or to someone's file:
    training reads no groups from it instead of reading forever."""
    from workbench.data.folders import read_groups

    data = tmp_path / "data"
    shutil.copytree(folders["baseline"], data)
    (data / "manifest.jsonl").symlink_to("/dev/zero")
    assert read_groups(data) == {}
    outside = tmp_path / "rows.jsonl"
    outside.write_text(json.dumps({"path": "circle/000.png", "dup_group": "g"}) + "\n")
    (data / "manifest.jsonl").unlink()
    (data / "manifest.jsonl").symlink_to(outside)
    assert read_groups(data) == {}
