"""Fixtures for the hostile-input tests: tiny image folders, a trained run of each family.

Everything an attacker (or a careless colleague) can hand the workbench is built here for real:
image folders, run logs, checkpoints, records — no mocks.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).parent))  # the command corpus beside the tests

SHAPES = ("circle", "square", "triangle", "cross")


def draw_folder(root: Path, classes: tuple[str, ...], per_class: int, size: int = 16, seed: int = 0) -> Path:
    """``root/<class>/<i>.png``: a bright shape per class on a dark random background."""
    rng = random.Random(seed)
    for ci, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            im = Image.new("RGB", (size, size), tuple(rng.randrange(0, 60) for _ in range(3)))
            d = ImageDraw.Draw(im)
            r = rng.uniform(0.25, 0.45) * size
            cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
            box = [cx - r, cy - r, cx + r, cy + r]
            col = tuple(rng.randrange(150, 256) for _ in range(3))
            [d.ellipse, d.rectangle, d.chord, d.pieslice][ci % 4](box, *([] if ci % 4 < 2 else [30 * ci, 300]),
                                                                 fill=col)
            im.save(root / c / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def folders(tmp_path_factory) -> dict[str, Path]:
    """``baseline``: 4 classes × 6 images; ``fewshot``: 12 classes × 4 images (16 px)."""
    base = tmp_path_factory.mktemp("hostile-data")
    return {"baseline": draw_folder(base / "shapes", SHAPES, 6),
            "fewshot": draw_folder(base / "fewshot", tuple(f"c{i:02d}" for i in range(12)), 4)}


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)  # the cores are shared by every test process
    yield


@pytest.fixture(scope="session")
def trained(folders, tmp_path_factory):
    """A trained baseline run and a tested few-shot run, in a run log of their own."""
    from command_corpus import BASELINE, FEWSHOT
    from workbench import RunLog, train

    log = RunLog(tmp_path_factory.mktemp("trained-home") / "runs.json")
    base = train({**BASELINE, "epochs": 1}, data=str(folders["baseline"]), log=log, progress=False)["run_id"]
    few = train({**FEWSHOT, "data": str(folders["fewshot"])}, log=log, progress=False)["run_id"]
    return log, {"baseline": base, "fewshot": few}


