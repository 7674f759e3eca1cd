"""Commands and data for the model-based meta-learning tests (a uniquely named module: several
``conftest`` modules exist in the suite, so test files import from here)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from training_support import fast_command, make_shapes  # noqa: E402,F401


def conv4_command(**over) -> dict:
    """A baseline Conv-4 on 1-channel 28 px images: the same network the few-shot kinds train."""
    cmd = {"name": "conv4", "image_size": 28, "channels": 1, "model": {"preset": "conv4", "params": {"hidden": 8}},
           "optimizer": {"name": "Adam", "params": {"lr": 0.003}}, "batch_size": 16, "epochs": 2, "seed": 0,
           "trainer": {"accelerator": "cpu"}, "threads": 1}
    cmd.update(over)
    return cmd


#: The glyph subset tests/fewshot uses too (its cache is generated once per test session).
GLYPHS = {"alphabets": ["Latin", "Greek", "Cyrillic", "Armenian"], "max_per_alphabet": 12}


def protonet_command(**over) -> dict:
    cmd = {"kind": "protonet", "name": "proto", "data": "glyphs", "glyphs": GLYPHS,
           "model": {"preset": "conv4", "params": {"hidden": 8}}, "episodes": {"n_way": 3, "k_shot": 1, "q_query": 2,
                                                                               "meta_batch": 2},
           "steps": 6, "val_every": 3, "val_episodes": 2, "test_episodes": 4, "seed": 0, "threads": 1,
           "trainer": {"accelerator": "cpu"}}
    cmd.update(over)
    return cmd
