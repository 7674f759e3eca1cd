"""Omniglot and mini-ImageNet loaders on tiny fake trees (nothing is downloaded)."""
from __future__ import annotations

import pytest
from PIL import Image

from workbench.data.episodes import EpisodeSampler, split_classes
from workbench.data.omniglot import miniimagenet_source, omniglot_source


def _png(path, value=255, mode="L", size=(105, 105)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


def test_omniglot_torchvision_layout(tmp_path):
    base = tmp_path / "omniglot-py"
    for part, alphabets in (("images_background", ["Latin", "Greek"]), ("images_evaluation", ["Tengwar"])):
        for a in alphabets:
            for ch in ("character01", "character02"):
                for i in range(3):
                    _png(base / part / a / ch / f"{i}.png", value=255 if i else 0)
    src = omniglot_source(tmp_path)
    assert len(src.classes) == 6 and "Tengwar/character01" in src.classes
    assert set(src.groups) == {"Latin", "Greek", "Tengwar"}
    x = src.get(0, [0, 1])
    assert x.shape == (2, 1, 28, 28)
    assert float(x[0].mean()) == 1.0 and float(x[1].mean()) == 0.0  # inverted: black strokes become ink = 1
    assert len(omniglot_source(tmp_path, background=False).classes) == 2
    s = split_classes(src.classes, groups=src.groups, by="group", fractions=(0.34, 0.33, 0.33))
    assert sum(map(len, s.values())) == 6
    with pytest.raises(FileNotFoundError, match="download=True"):
        omniglot_source(tmp_path / "missing")


def test_miniimagenet_csv_split(tmp_path):
    rows = {"train": ["n01", "n02"], "val": ["n03"], "test": ["n04"]}
    for split, labels in rows.items():
        lines = ["filename,label"]
        for lab in labels:
            for i in range(2):
                fname = f"{lab}_{i}.jpg"
                _png(tmp_path / "images" / fname, mode="RGB", size=(100, 90))
                lines.append(f"{fname},{lab}")
        (tmp_path / f"{split}.csv").write_text("\n".join(lines) + "\n")
    src, predefined = miniimagenet_source(tmp_path, image_size=84)
    assert src.classes == ["n01", "n02", "n03", "n04"] and predefined["n03"] == "val"
    s = split_classes(src.classes, predefined=predefined)
    assert s == {"train": ["n01", "n02"], "val": ["n03"], "test": ["n04"]}
    t = EpisodeSampler(src, s["train"], n_way=2, k_shot=1, q_query=1).task(0)
    assert t.support_x.shape == (2, 3, 84, 84)


def test_miniimagenet_folders(tmp_path):
    for split, labels in (("train", ["a", "b"]), ("test", ["c"])):
        for lab in labels:
            _png(tmp_path / split / lab / "0.jpg", mode="RGB")
    src, predefined = miniimagenet_source(tmp_path, image_size=16)
    assert predefined == {"a": "train", "b": "train", "c": "test"}
    flat = tmp_path / "flat"
    _png(flat / "x" / "0.jpg", mode="RGB")
    src2, pre2 = miniimagenet_source(flat)
    assert src2.classes == ["x"] and pre2 is None
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        miniimagenet_source(tmp_path / "nope")
