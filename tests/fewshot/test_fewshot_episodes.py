"""Episodic sampling: splits never leak classes, tasks are reproducible, shapes and rotations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.data.episodes import (EpisodeSampler, EpisodicDataModule, FolderSource, TensorSource,
                                     check_disjoint, split_classes)


def _source(n_classes=30, per=8, groups=None):
    x = torch.arange(n_classes).repeat_interleave(per).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).to(torch.uint8)
    y = torch.arange(n_classes).repeat_interleave(per)
    return TensorSource(x.contiguous(), y, [f"c{i}" for i in range(n_classes)], groups=groups)


def test_splits_are_disjoint_cover_everything_and_fixed_by_seed():
    names = [f"c{i}" for i in range(100)]
    s = split_classes(names, seed=3, fractions=(0.6, 0.2, 0.2))
    assert sum(len(v) for v in s.values()) == 100
    assert not (set(s["train"]) & set(s["val"])) and not (set(s["train"]) & set(s["test"]))
    assert s == split_classes(list(reversed(names)), seed=3, fractions=(0.6, 0.2, 0.2))  # order-free
    assert s != split_classes(names, seed=4, fractions=(0.6, 0.2, 0.2))
    groups = [f"g{i // 10}" for i in range(100)]
    sg = split_classes(names, seed=0, groups=groups, by="group", fractions=(0.6, 0.2, 0.2))
    gsets = {k: {groups[names.index(c)] for c in v} for k, v in sg.items()}
    assert not (gsets["train"] & gsets["test"]) and not (gsets["train"] & gsets["val"])
    with pytest.raises(ValueError, match="split_by"):
        split_classes(names, by="alphabet")


def test_sampler_never_leaks_classes_across_splits():
    src = _source(40)
    splits = split_classes(src.classes, seed=0, fractions=(0.5, 0.25, 0.25))
    check_disjoint(splits)
    for name, stream in (("train", 0), ("val", 1), ("test", 2)):
        sm = EpisodeSampler(src, splits[name], n_way=5, k_shot=1, q_query=3, seed=0, rotate=name == "train",
                            stream=stream)
        allowed = {int(c[1:]) for c in splits[name]}
        for i in range(40):
            t = sm.task(i)
            # images carry their class id as pixel value: every image must come from this split
            seen = {int(v) for v in torch.cat([t.support_x, t.query_x]).amax((1, 2, 3)).mul(255).round()}
            seen |= {int(v) for v in torch.cat([t.support_x, t.query_x]).amin((1, 2, 3)).mul(255).round()}
            assert seen <= allowed, (name, seen - allowed)
            assert {c.split("@")[0] for c in t.classes} <= set(splits[name])
    with pytest.raises(ValueError, match="both"):
        check_disjoint({"train": ["a", "b"], "test": ["b@90"]})


def test_same_seed_same_tasks_in_any_order():
    src = _source()
    a = EpisodeSampler(src, src.classes, 5, 2, 3, seed=7)
    b = EpisodeSampler(src, src.classes, 5, 2, 3, seed=7)
    t_late = b.task(11)
    for i in range(12):
        ta = a.task(i)
        tb = b.task(i)
        for x, y in zip(ta.as_tuple(), tb.as_tuple()):
            assert torch.equal(x, y)
    assert torch.equal(a.task(11).query_x, t_late.query_x)
    assert a.task(0).classes != a.task(1).classes or not torch.equal(a.task(0).query_x, a.task(1).query_x)
    c = EpisodeSampler(src, src.classes, 5, 2, 3, seed=8)
    assert any(c.task(i).classes != a.task(i).classes for i in range(5))


def test_task_shapes_labels_and_rotation():
    x = torch.zeros(10 * 6, 1, 5, 5)
    x[:, 0, 0, 0] = 1.0  # a marker pixel in the top-left corner
    src = TensorSource(x, torch.arange(10).repeat_interleave(6))
    sm = EpisodeSampler(src, src.classes, n_way=4, k_shot=2, q_query=3, seed=0, rotate=True)
    assert len(sm.pool) == 40
    t = sm.task(0)
    assert t.support_x.shape == (8, 1, 5, 5) and t.query_x.shape == (12, 1, 5, 5)
    assert t.support_y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3] and t.query_y.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    rotated = [i for i, c in enumerate(t.classes) if "@" in c]
    found = False
    for j in range(20):
        t = sm.task(j)
        for lab, c in enumerate(t.classes):
            img = t.support_x[t.support_y == lab][0, 0]
            expect = {"": (0, 0), "@90": (4, 0), "@180": (4, 4), "@270": (0, 4)}[c[c.find("@"):] if "@" in c else ""]
            assert img[expect] == 1.0
            found |= "@" in c
    assert found and rotated is not None
    with pytest.raises(ValueError, match="n_way"):
        EpisodeSampler(src, src.classes[:3], n_way=4, k_shot=1, q_query=1)
    with pytest.raises(ValueError, match="images per class"):
        EpisodeSampler(src, src.classes, n_way=4, k_shot=4, q_query=4)


def test_datamodule_meta_batches_and_ddp_split():
    src = _source(30)
    splits = split_classes(src.classes, seed=0, fractions=(0.6, 0.2, 0.2))
    dm = EpisodicDataModule(src, splits, n_way=5, k_shot=1, q_query=2, meta_batch=4, train_tasks=8,
                            val_episodes=3, test_episodes=5)
    sx, sy, qx, qy = next(iter(dm.train_dataloader()))
    assert sx.shape == (4, 5, 1, 4, 4) and qy.shape == (4, 10)
    assert len(dm.test_dataloader().dataset) == 5

    class _T:  # a trainer with two processes: each gets half the meta-batch
        world_size = 2
    dm.trainer = _T()
    assert next(iter(dm.train_dataloader()))[0].shape[0] == 2


def test_folder_source(tmp_path):
    from PIL import Image

    for c in ("cat", "dog", "owl"):
        (tmp_path / c).mkdir()
        for i in range(4):
            Image.new("RGB", (10, 12), (40 * i, 80, 200)).save(tmp_path / c / f"{i}.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    src = FolderSource(tmp_path, image_size=8, channels=3)
    assert src.classes == ["cat", "dog", "owl"] and src.count(0) == 4
    x = src.get(1, [0, 3])
    assert x.shape == (2, 3, 8, 8) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert src.fingerprint()["images"] == 12
    with pytest.raises(FileNotFoundError):
        FolderSource(tmp_path / "nope")


def _digits_folder(root, per_class=8):
    """Six shape classes on 20×20; 'nine' is 'six' turned by 180° (a rotation that is another class)."""
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(0)

    def six(d, dx, dy):
        d.ellipse([5 + dx, 10 + dy, 13 + dx, 18 + dy], outline=255, width=2)
        d.line([6 + dx, 14 + dy, 9 + dx, 2 + dy], fill=255, width=2)

    shapes = {
        "six": six,
        "triangle": lambda d, dx, dy: d.polygon([(10 + dx, 3 + dy), (3 + dx, 16 + dy), (17 + dx, 16 + dy)], fill=255),
        "plus": lambda d, dx, dy: (d.line([10 + dx, 3 + dy, 10 + dx, 17 + dy], fill=255, width=3),
                                   d.line([3 + dx, 10 + dy, 17 + dx, 10 + dy], fill=255, width=3)),
        "ring": lambda d, dx, dy: d.ellipse([3 + dx, 3 + dy, 17 + dx, 17 + dy], outline=255, width=2),
        "corner": lambda d, dx, dy: d.rectangle([2 + dx, 2 + dy, 9 + dx, 9 + dy], fill=255),
    }
    for name, draw in shapes.items():
        for i in range(per_class):
            im = Image.new("L", (20, 20))
            draw(ImageDraw.Draw(im), rng.randint(-1, 1), rng.randint(-1, 1))
            for target, img in ((name, im), ("nine", im.rotate(180)) if name == "six" else (None, None)):
                if target:
                    (root / target).mkdir(parents=True, exist_ok=True)
                    img.save(root / target / f"{i}.png")
    return root


def test_rotated_meta_train_classes_never_impersonate_held_out_ones(tmp_path):
    """Bug (issue 16): with rotate on a folder dataset, 'six' turned by 180° taught the held-out 'nine'."""
    from workbench import training
    from workbench.data.episodes import rotation_collisions

    root = _digits_folder(tmp_path / "digits")
    src = FolderSource(root, image_size=20, channels=1)
    assert rotation_collisions(src, ["six", "triangle"], ["nine", "ring"]) == ["six@180"]
    sampler = EpisodeSampler(src, ["six", "triangle", "plus"], n_way=3, k_shot=1, q_query=1, rotate=True,
                             exclude=["six@180"])
    assert ("six", 2) not in [(sampler.class_names[c], r) for c, r in sampler.pool] and len(sampler.pool) == 11
    cmd = {"kind": "protonet", "data": str(root), "image_size": 20, "steps": 2, "split_by": "class",
           "split": {"train": 0.5, "val": 0.0, "test": 0.5}, "test_episodes": 0, "val_episodes": 0,
           "episodes": {"n_way": 2, "k_shot": 1, "q_query": 2, "meta_batch": 1}}
    seed = next(s for s in range(100) if {"six"} <= set(training.prepare({**cmd, "seed": s}).record["splits"]["train"])
                and "nine" in training.prepare({**cmd, "seed": s}).record["splits"]["test"])
    off = training.prepare({**cmd, "seed": seed}).dataset["rotation"]  # folders: off unless asked for
    assert off["on"] is False and "6 → 9" in off["why"]
    on = training.prepare({**cmd, "seed": seed, "episodes": {**cmd["episodes"], "rotate": True}})
    assert on.dataset["rotation"]["on"] is True and "six@180" in on.dataset["rotation"]["excluded"]
    pool = on.datamodule.sampler("train")
    drawn = {n for i in range(60) for n in pool.task(i).classes}
    assert "six@180" not in drawn and "six@90" in drawn  # other rotations still augment
