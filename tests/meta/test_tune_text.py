"""Text-side task similarity in the warm start's neighbour search (issue 16 → issue 11)."""
from __future__ import annotations

import pytest

from workbench.meta.warmstart import neighbour_distances


def _feats(scalar: float, text=None) -> dict:
    f = {"scalars": {"log_classes": scalar, "pixel_mean": 0.5}, "embedding": []}
    if text is not None:
        f["text"] = text
    return f


def test_text_breaks_an_image_tie_towards_the_task_with_related_searches():
    new = _feats(1.0, ["red fox", "red fox cute", "fox"])
    past = [_feats(0.0, ["city bus", "city bus drawing", "bus"]), _feats(2.0, ["arctic fox", "arctic fox cute", "fox"])]
    image_only = neighbour_distances(new, past, text_weight=0)
    assert image_only[0] == pytest.approx(image_only[1])  # the pixels cannot tell them apart
    d = neighbour_distances(new, past)
    assert d[1] < d[0]
    # a past task without text counts as unrelated text, never as a perfect match
    d2 = neighbour_distances(new, [_feats(0.0), _feats(2.0, ["arctic fox", "fox"])])
    assert d2[1] < d2[0]


def test_without_text_on_the_new_task_it_is_the_image_distance_unchanged():
    past = [_feats(0.0, ["city bus"]), _feats(3.0, ["fox"])]
    assert neighbour_distances(_feats(1.0), past) == neighbour_distances(_feats(1.0), past, text_weight=0)
    assert neighbour_distances(_feats(1.0), past)[0] < neighbour_distances(_feats(1.0), past)[1]


def test_task_features_carry_a_scraped_folders_text(tmp_path):
    from workbench.meta.features import task_features
    from workbench.runlog import RunLog
    from workbench.scrape import SerpApiStub, scrape

    with SerpApiStub() as stub:
        scrape(["red fox", "grey wolf"], tmp_path / "ds", limit=3, base_url=stub.base_url, api_key="",
               runlog=RunLog(tmp_path / "runs.db"), log=lambda m: None, near_duplicates="off")
    f = task_features(tmp_path / "ds")
    assert f["text"][:2] == ["red fox", "grey wolf"] and "fox" in f["text"]
    assert "text" in task_features(tmp_path / "ds")  # the cached description too
