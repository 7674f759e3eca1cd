"""Near-duplicates: the stub's planted resized / re-encoded / cropped copies are found (recall and
precision >= 0.95), grouped within and across labels, dropped or kept by the documented rule."""
from __future__ import annotations

import itertools
import json

import pytest
from workbench.scrape import decode_image, dup_groups, load_manifest, load_rejects, read_summary, scrape
from workbench.scrape.neardup import correlation, find, phash_hex
from workbench.scrape.stub_content import STOCK_QUERY, near_copy, truth_of


def _scrape(out, stub, runlog, **kw):
    kw.setdefault("log", lambda m: None)
    return scrape(kw.pop("queries", ["red circles", "arctic fox"]), out, base_url=stub.base_url, runlog=runlog,
                  **kw)


def _pairs(rows, same):
    tp = fp = fn = 0
    for a, b in itertools.combinations(rows, 2):
        t, p = truth_of(a["url"]) == truth_of(b["url"]), same(a, b)
        tp, fp, fn = tp + (t and p), fp + (p and not t), fn + (t and not p)
    return tp / (tp + fn), tp / (tp + fp)


def test_planted_copies_are_found_with_recall_and_precision_above_0_95(tmp_path, stub, runlog):
    stub.set_fault("near_duplicates")
    res = _scrape(tmp_path / "ds", stub, runlog, queries=["red circles", "yellow stripes", "arctic fox"],
                  near_duplicates="keep")
    rows = load_manifest(tmp_path / "ds")
    assert len(rows) == 300 and res.rejects == {}
    recall, precision = _pairs(rows, lambda a, b: a.get("dup_group") is not None
                               and a.get("dup_group") == b.get("dup_group"))
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)
    stock = {r["dup_group"] for r in rows if truth_of(r["url"]).startswith(STOCK_QUERY)}
    assert len(stock) == 1 and None not in stock  # one group across all three labels
    assert res.near_duplicates["cross_label"] >= 1


def test_drop_keeps_one_copy_per_label_and_tops_the_label_up(tmp_path, stub, runlog):
    stub.set_fault("near_duplicates")
    res = _scrape(tmp_path / "ds", stub, runlog, limit=70)
    rows = load_manifest(tmp_path / "ds")
    assert res.counts == {"red circles": 70, "arctic fox": 70}  # the dropped copies were replaced
    truths = [truth_of(r["url"]) for r in rows if not truth_of(r["url"]).startswith(STOCK_QUERY)]
    assert len(truths) == len(set(truths))  # no two kept images of one label show one picture
    dropped = [r for r in load_rejects(tmp_path / "ds") if r["reason"] == "near_duplicate"]
    assert len(dropped) == res.rejects["near_duplicate"] >= 10
    assert all(r["dup_of"] and not (tmp_path / "ds" / r["dup_of"]).is_symlink() for r in dropped)
    for r in dropped:  # the rule: the copy with the most original pixels stays
        kept = next(x for x in rows if x["path"] == r["dup_of"])
        assert truth_of(kept["url"]) == truth_of(r["url"])
    on_disk = {p.relative_to(tmp_path / "ds").as_posix() for p in (tmp_path / "ds").rglob("*.jpg")}
    assert on_disk == {r["path"] for r in rows}  # dropped files are gone, kept ones are all there
    groups = read_summary(tmp_path / "ds")["near_duplicates"]["groups"]
    assert all(g["kept"] for g in groups.values())


def test_a_rerun_does_not_fetch_dropped_copies_again(tmp_path, stub, runlog):
    stub.set_fault("near_duplicates")
    first = _scrape(tmp_path / "ds", stub, runlog, limit=70)
    before = stub.count("near") + stub.count("img")
    again = _scrape(tmp_path / "ds", stub, runlog, limit=70)
    assert again.new == {"red circles": 0, "arctic fox": 0} and again.counts == first.counts
    assert stub.count("near") + stub.count("img") == before
    assert again.rejects.get("known_bad", 0) >= first.rejects["near_duplicate"]


def test_cross_label_copies_are_tagged_for_the_split(tmp_path, stub, runlog):
    stub.set_fault("near_duplicates")
    _scrape(tmp_path / "ds", stub, runlog)
    groups = dup_groups(tmp_path / "ds")
    rows = {r["path"]: r for r in load_manifest(tmp_path / "ds")}
    stock = [p for p in groups if truth_of(rows[p]["url"]).startswith(STOCK_QUERY)]
    assert len(stock) == 2 and len({rows[p]["label"] for p in stock}) == 2 and len({groups[p] for p in stock}) == 1
    lines = [json.loads(x) for x in (tmp_path / "ds" / "manifest.jsonl").read_text().splitlines()]
    assert sum(1 for x in lines if x.get("dup_group")) == len(groups)


def test_distinct_corpus_pictures_are_not_grouped(tmp_path, stub, runlog):
    res = _scrape(tmp_path / "ds", stub, runlog, queries=["arctic fox", "purple stars", "blue squares"],
                  near_duplicates="keep")
    assert res.total == 300 and res.near_duplicates["n_groups"] == 0


@pytest.mark.parametrize("kind", ["resized", "reencoded", "cropped"])
def test_one_copy_of_each_kind_is_verified(kind):
    from workbench.scrape import corpus

    body, _ = corpus.image_bytes("red fox", 3, None, (96, 96))  # an RGBA PNG: flattened like any download
    a = decode_image(body)
    for seed in range(5):
        b = decode_image(near_copy(body, kind, f"s{seed}"))
        assert correlation(a, b) >= 0.9 and bin(int(phash_hex(a), 16) ^ int(phash_hex(b), 16)).count("1") <= 20
    found = find("/nonexistent", [{"label": "x", "sha256": "a" * 64, "path": "x/a.jpg", "page": 0, "position": 1},
                                  {"label": "x", "sha256": "b" * 64, "path": "x/b.jpg", "page": 0, "position": 2}],
                 images={0: a, 1: b})
    assert found.groups == [[0, 1]] and found.drop == [(1, 0)]


def test_the_mode_is_checked(tmp_path, runlog):
    with pytest.raises(ValueError, match="near_duplicates: 'merge' is not allowed; expected one of drop, keep, off"):
        scrape(["red fox"], tmp_path / "ds", runlog=runlog, near_duplicates="merge")
