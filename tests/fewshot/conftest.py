"""Small, shared few-shot fixtures (kept tiny: the whole folder must run in well under a minute)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def small_glyphs():
    """Four alphabets × 12 classes of the glyph benchmark (cached under the session's WORKBENCH_HOME)."""
    from workbench.data.glyphs import load_glyphs

    return load_glyphs(alphabets=["Latin", "Greek", "Cyrillic", "Armenian"], max_per_alphabet=12)


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)  # the cores are shared; tiny models gain nothing from more
    yield
