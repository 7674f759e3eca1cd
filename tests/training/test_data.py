"""Image-folder DataModule: seeded stratified split, decoded-image cache, labels, fingerprint."""
from __future__ import annotations

import os

import numpy as np
import pytest

from training_support import fast_command as _fast_command
from workbench.commands import parse
from workbench.registry import ConfigError
from workbench.data.imagefolder import ImageFolderDataModule, load_image, stratified_split


def fast_command(**over):
    """The fast command, parsed: a DataModule takes a checked command."""
    return parse(_fast_command(**over))


def test_split_is_stratified_seeded_and_disjoint(shapes_dir):
    dm = ImageFolderDataModule(shapes_dir, fast_command(split={"train": 0.5, "val": 0.25, "test": 0.25}))
    parts = dm.split
    assert sorted(parts["train"] + parts["val"] + parts["test"]) == list(range(len(dm.samples)))
    for part, want in (("train", 12), ("val", 6), ("test", 6)):
        counts = np.bincount([dm.targets[i] for i in parts[part]], minlength=4)
        assert counts.tolist() == [want] * 4, (part, counts)
    again = ImageFolderDataModule(shapes_dir, fast_command(split={"train": 0.5, "val": 0.25, "test": 0.25}))
    assert again.split == parts
    other = ImageFolderDataModule(shapes_dir, fast_command(seed=1, split={"train": 0.5, "val": 0.25, "test": 0.25}))
    assert other.split["test"] != parts["test"]
    info = dm.info()
    assert info["split_counts"] == {"train": 48, "val": 24, "test": 24} and info["classes"][0] == "circle"
    files = dm.split_files()
    reused = ImageFolderDataModule(shapes_dir, fast_command(), split=files)
    assert reused.split == parts


def test_tiny_classes_still_train():
    samples = [("a/0", 0), ("a/1", 0), ("b/0", 1), ("b/1", 1), ("b/2", 1)]
    s = stratified_split(samples, {"train": 0.7, "val": 0.15, "test": 0.15}, 0)
    assert len(s["train"]) >= 2 and all(any(samples[i][1] == c for i in s["train"]) for c in (0, 1))


def test_cache_decodes_each_image_once_and_persists(shapes_dir, monkeypatch):
    import workbench.data.imagefolder as imf

    calls = []
    real = imf.load_image
    monkeypatch.setattr(imf, "load_image", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    cmd = fast_command(image_size=20)  # a size no other test uses: a cold cache
    dm = ImageFolderDataModule(shapes_dir, cmd)
    ds = dm.dataset("train")
    for _ in range(2):  # two "epochs"
        for i in range(len(ds)):
            x, y = ds[i]
    assert len(calls) == len(ds)  # epoch 2 decoded nothing
    assert x.dtype.is_floating_point and x.shape == (3, 20, 20) and 0 <= float(x.min()) <= float(x.max()) <= 1
    for part in ("val", "test"):
        d = dm.dataset(part)
        for i in range(len(d)):
            d[i]
    assert dm.cache.path.is_file()  # complete → written for the next run
    calls.clear()
    dm2 = ImageFolderDataModule(shapes_dir, cmd)
    dm2.dataset("train")[0]
    assert calls == []  # a second run on the same folder and size decodes nothing
    os.utime(shapes_dir / "circle" / "0000.png", ns=(1, 1))  # the folder changed → new key
    dm3 = ImageFolderDataModule(shapes_dir, cmd)
    assert dm3.cache.key != dm2.cache.key and not dm3.cache.filled.any()


def test_pil_ops_and_grayscale(shapes_dir):
    arr = load_image(shapes_dir / "circle" / "0000.png", 1, (12, 16), [])
    assert arr.shape == (1, 12, 16) and arr.dtype == np.uint8
    from workbench.registry import Component

    flipped = load_image(shapes_dir / "circle" / "0000.png", 3, (24, 24), [Component("mirror")])
    plain = load_image(shapes_dir / "circle" / "0000.png", 3, (24, 24), [])
    assert np.array_equal(flipped, plain[:, :, ::-1])


def test_labels_pick_and_order_classes(shapes_dir):
    dm = ImageFolderDataModule(shapes_dir, fast_command(labels=["square", "circle"]))
    assert dm.classes == ["square", "circle"] and dm.n_labels == 2 and len(dm.samples) == 48
    with pytest.raises(ConfigError) as ei:
        ImageFolderDataModule(shapes_dir, fast_command(labels=["square", "hexagon"]))
    assert ei.value.path == "labels[1]" and "circle" in ei.value.allowed


def test_label_map_merges_and_renames_classes(shapes_dir):
    cmd = fast_command(label_map={"circle": "round", "square": "angular", "triangle": "angular"})
    dm = ImageFolderDataModule(shapes_dir, cmd)
    assert dm.classes == ["angular", "cross", "round"]
    counts = np.bincount(dm.targets).tolist()
    assert counts == [48, 24, 24]
    assert dm.info()["label_map"]["circle"] == "round"
    with pytest.raises(ConfigError) as ei:
        ImageFolderDataModule(shapes_dir, fast_command(label_map={"circel": "round"}))
    assert ei.value.path == "label_map.circel" and ei.value.suggestions == ["circle"]
    with pytest.raises(ConfigError, match="^label_map: expected an object"):
        fast_command(label_map={"circle": 3})


def test_dataloader_workers_share_the_filled_cache(shapes_dir, runlog):
    from workbench import jobs

    res = jobs.train(_fast_command(name="workers", epochs=2, num_workers=1), data=shapes_dir, log=runlog,
                     progress=False)
    assert res["status"] == "trained" and res["summary"]["steps"] == 8


def _manifest(root, groups):
    """Write ROOT/manifest.jsonl as the scraper does, with dup_group on the planted rows."""
    import json

    rows = []
    for c in sorted(p.name for p in root.iterdir() if p.is_dir()):
        for f in sorted((root / c).iterdir()):
            rel = f"{c}/{f.name}"
            row = {"path": rel, "label": c}
            if rel in groups:
                row["dup_group"] = groups[rel]
            rows.append(row)
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_near_duplicate_groups_stay_on_one_side_of_the_split(shapes_dir, tmp_path):
    import shutil

    from workbench import training
    from workbench.data.folders import read_groups

    root = tmp_path / "scraped"
    shutil.copytree(shapes_dir, root)
    assert read_groups(root) == {}  # no manifest, no groups
    planted = {}
    for c in ("circle", "square", "triangle", "cross"):
        for g in range(4):  # four groups of three near-duplicates per class
            for i in range(3):
                planted[f"{c}/{3 * g + i:04d}.png"] = f"{c}-{g}"
    planted["circle/0020.png"] = planted["square/0020.png"] = "across"  # one image under two labels
    _manifest(root, planted)
    assert read_groups(root) == planted
    for seed in range(5):
        dm = ImageFolderDataModule(root, fast_command(seed=seed, split={"train": 0.5, "val": 0.25, "test": 0.25}))
        part_of = {dm.samples[i][0]: part for part, idx in dm.split.items() for i in idx}
        for group in set(planted.values()):
            parts = {part_of[f] for f, g in planted.items() if g == group}
            assert len(parts) == 1, (seed, group, parts)
        assert all(len(dm.split[p]) > 0 for p in ("train", "val", "test"))
    samples = ImageFolderDataModule(shapes_dir, fast_command()).samples
    singletons = {rel: f"g{i}" for i, (rel, _) in enumerate(samples)}
    fr = {"train": 0.5, "val": 0.25, "test": 0.25}
    assert stratified_split(samples, fr, 3, singletons) == stratified_split(samples, fr, 3)  # groups of one: as before
    info = training.prepare(_fast_command(), root).dataset
    assert info["dup_groups"] == {"source": "manifest.jsonl", "groups": 17, "images": 50, "kept_together": True}
    assert "dup_groups" not in training.prepare(_fast_command(), shapes_dir).dataset
