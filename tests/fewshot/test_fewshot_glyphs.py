"""The glyph benchmark: size, near-duplicate rule, determinism, subsets and the cache."""
from __future__ import annotations

import unicodedata

import numpy as np

from workbench.data import glyphs as G


def test_class_list_is_big_enough_and_follows_the_duplicate_rule():
    classes = G.class_list()
    alphabets = {a for a, _ in classes}
    assert len(classes) >= 600 and len(alphabets) >= 10
    chars = {chr(cp) for _, cp in classes}
    assert "A" in chars and "\u0391" not in chars          # Greek Alpha = Latin A: dropped
    assert "\u043e" not in chars                            # Cyrillic o = Latin o: dropped
    assert "\u03a8" in chars                                # Greek Psi has no Latin twin: kept
    assert not any(unicodedata.decomposition(c) for c in chars)  # no accented variants
    assert len({cp for _, cp in classes}) == len(classes)


def test_no_two_classes_are_near_duplicates_even_rotated():
    reps = []
    for _, cp in G.class_list()[:150]:
        can, _ = G._canonical(chr(cp))
        reps.append(can)
    vs = np.stack([G._unit(r) for r in reps])
    rots = np.stack([np.stack([G._unit(np.rot90(r, k)) for k in range(4)]) for r in reps])  # [n,4,D]
    sim = np.einsum("id,jkd->ijk", vs, rots).max(-1)
    np.fill_diagonal(sim, 0)
    assert sim.max() < G.DUPLICATE_SIMILARITY


def test_generation_is_deterministic_and_subsets_match(small_glyphs):
    g = small_glyphs
    assert g.images.shape == (48, 20, 28, 28) and g.images.dtype == np.uint8
    assert g.alphabet_names == ["Latin", "Greek", "Cyrillic", "Armenian"]
    assert g.images.max() == 255 and (g.images > 0).mean() < 0.6  # ink on a dark background
    sub = G.generate(alphabets=["Greek"], max_per_alphabet=3)
    i = g.classes.index(sub.classes[0])
    np.testing.assert_array_equal(sub.images, g.images[i:i + 3])  # a class renders the same in any subset
    other = G.generate(seed=1, alphabets=["Greek"], max_per_alphabet=3)
    assert not np.array_equal(other.images, sub.images)
    # instances of a class vary (fonts, strokes, distortions)
    a = g.images[0].reshape(20, -1).astype(float)
    assert len({x.tobytes() for x in g.images[0]}) == 20 and a.std(0).mean() > 10


def test_cache_roundtrip(small_glyphs):
    again = G.load_glyphs(alphabets=["Latin", "Greek", "Cyrillic", "Armenian"], max_per_alphabet=12)
    assert again.classes == small_glyphs.classes
    np.testing.assert_array_equal(again.images, small_glyphs.images)
    assert G._cache_path(0, ["Latin", "Greek", "Cyrillic", "Armenian"], 12, 20).is_file()


def test_unknown_alphabet_is_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match="Klingon.*allowed"):
        G.generate(alphabets=["Klingon"])
