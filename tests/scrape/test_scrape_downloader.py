"""Downloader and dataset writer against the stub: verification, faults, dedupe, resume, layout."""
from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from workbench.scrape import Rejected, SerpApiStub, decode_image, load_manifest, load_rejects, scrape
from workbench.scrape.stub_content import HTML as _HTML, SVG as _SVG, huge_png as _huge_png


def _png(mode: str) -> bytes:
    im = Image.new("RGB", (40, 30), (200, 10, 10))
    buf = io.BytesIO()
    if mode == "P":
        p = im.convert("P", palette=Image.ADAPTIVE, colors=8)
        p.save(buf, "PNG", transparency=0)
    elif mode == "RGBA":
        im.convert("RGBA").save(buf, "PNG")
    elif mode == "CMYK":
        im.convert("CMYK").save(buf, "JPEG")
    elif mode == "I;16":
        Image.new("I;16", (40, 30), 40000).save(buf, "PNG")
    else:
        im.convert(mode).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["P", "RGBA", "CMYK", "L", "LA", "I;16", "1"])
def test_every_mode_becomes_rgb(mode):
    im = decode_image(_png(mode))
    assert im.mode == "RGB" and im.size == (40, 30)


def test_transparent_palette_pixels_become_white():
    im = Image.new("P", (20, 20), 0)
    im.putpalette([0, 0, 0] * 256)
    buf = io.BytesIO()
    im.save(buf, "PNG", transparency=0)
    assert decode_image(buf.getvalue()).getpixel((5, 5)) == (255, 255, 255)


@pytest.mark.parametrize("data,reason", [
    (_HTML, "not_an_image"),
    (_SVG, "svg"),
    (_huge_png(), "decompression_bomb"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 10, "not_an_image"),
    (b"", "not_an_image"),
])
def test_decode_rejects_with_reason(data, reason):
    with pytest.raises(Rejected) as ei:
        decode_image(data)
    assert ei.value.reason == reason


def test_truncated_jpeg_is_rejected():
    buf = io.BytesIO()
    Image.effect_noise((128, 128), 40).convert("RGB").save(buf, "JPEG")
    with pytest.raises(Rejected) as ei:
        decode_image(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert ei.value.reason == "truncated"


def test_tiny_images_are_rejected():
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    with pytest.raises(Rejected, match="too_small"):
        decode_image(buf.getvalue())


def _scrape(out, stub, runlog, **kw):
    kw.setdefault("log", lambda m: None)
    kw.setdefault("backoff", 0.01)
    return scrape(kw.pop("queries", ["red fox", "arctic fox"]), out, base_url=stub.base_url, runlog=runlog, **kw)


def test_dataset_layout_manifest_and_imagefolder(tmp_path, stub, runlog):
    from torchvision.datasets import ImageFolder

    res = _scrape(tmp_path / "ds", stub, runlog, limit=30)
    assert res.counts == {"red fox": 30, "arctic fox": 30} and res.rejects == {}
    ds = ImageFolder(str(tmp_path / "ds"))
    assert ds.classes == ["arctic_fox", "red_fox"] and len(ds) == 60
    rows = load_manifest(tmp_path / "ds")
    assert len(rows) == 60
    for r in rows:
        assert {"label", "folder", "query", "chips", "url", "source_page", "title", "width", "height", "sha256",
                "fetched_at", "path"} <= set(r)
        assert r["path"] == f"{r['folder']}/{r['sha256'][:16]}.jpg"
        with Image.open(tmp_path / "ds" / r["path"]) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (r["width"], r["height"])
    summary = json.loads((tmp_path / "ds" / "summary.json").read_text())
    assert summary["counts"] == {"red fox": 30, "arctic fox": 30} and summary["run_id"] == res.run_id
    # palette/alpha/CMYK sources were among them and were converted
    assert {r["position"] % 10 for r in rows} >= {4, 7, 9}  # positions 4, 7, 9 = png-rgba, png-palette, cmyk


@pytest.mark.parametrize("fault,reason", [
    ("html", "not_an_image"), ("svg", "svg"), ("truncated", "truncated"), ("huge", "decompression_bomb"),
    ("oversize", "too_large"),
])
def test_bad_images_are_rejected_with_their_reason(tmp_path, stub, runlog, fault, reason):
    stub.set_fault(fault)
    res = _scrape(tmp_path / "ds", stub, runlog, queries=["red fox"], limit=20, thumbnail_fallback=False)
    assert res.rejects == {reason: 1}
    assert res.counts == {"red fox": 20}
    rej = load_rejects(tmp_path / "ds")
    assert [r["reason"] for r in rej] == [reason] and rej[0]["label"] == "red fox"
    assert f"/fault/{fault}/" in rej[0]["url"]


def test_redirects_are_followed_and_accepted(tmp_path, stub, runlog):
    stub.set_fault("redirect")
    res = _scrape(tmp_path / "ds", stub, runlog, queries=["red fox"], limit=20)
    assert res.rejects == {} and res.counts == {"red fox": 20}
    assert any("/redirect/" in r["url"] for r in load_manifest(tmp_path / "ds"))
    assert stub.count("redirect") == 1


def test_duplicates_by_url_and_by_content(tmp_path, stub, runlog):
    stub.set_fault("duplicate")
    res = _scrape(tmp_path / "ds", stub, runlog, queries=["red fox"], limit=30)
    assert res.rejects == {"duplicate_url": 1, "duplicate_content": 1}
    rows = load_manifest(tmp_path / "ds")
    assert len({r["sha256"] for r in rows}) == len(rows) == 30


def test_same_urls_under_two_labels_are_kept_once(tmp_path, stub, runlog):
    res = _scrape(tmp_path / "ds", stub, runlog, queries=["red fox", "red fox"], labels=["a", "b"], limit=10,
                  workers=1)
    assert res.counts == {"a": 10, "b": 0}
    assert res.rejects == {"duplicate_url": 100}


def test_content_dedupe_spans_labels(tmp_path, stub):
    from workbench.scrape import Downloader, ImageResult

    url = f"{stub.origin}/img/red%20fox/-/auto/1.jpg"
    items = [ImageResult(query="q", label="a", page=0, position=1, original=url),
             ImageResult(query="q", label="b", page=0, position=1, original=url + "?copy=1")]
    rep = Downloader(tmp_path / "ds", workers=2).run(items, {"a": "a", "b": "b"})
    assert rep.stats["a"].accepted + rep.stats["b"].accepted == 1
    assert dict(rep.rejects) == {"duplicate_content": 1}
    assert "same bytes as" in rep.reject_rows[0]["detail"]


def test_size_cap_from_content_length(tmp_path, stub, runlog):
    res = _scrape(tmp_path / "ds", stub, runlog, queries=["red fox"], limit=5, max_bytes=500)
    assert res.counts == {"red fox": 0}
    assert set(res.rejects) == {"too_large"}
    assert "Content-Length" in load_rejects(tmp_path / "ds")[0]["detail"]


def test_resume_downloads_nothing_already_present(tmp_path, stub, runlog):
    first = _scrape(tmp_path / "ds", stub, runlog, limit=25)
    before = stub.count("img")
    mtime = (tmp_path / "ds" / "manifest.jsonl").stat().st_mtime_ns
    again = _scrape(tmp_path / "ds", stub, runlog, limit=25)
    assert stub.count("img") == before  # not one image fetched again
    assert again.new == {"red fox": 0, "arctic fox": 0} and again.counts == first.counts
    assert (tmp_path / "ds" / "manifest.jsonl").stat().st_mtime_ns == mtime
    more = _scrape(tmp_path / "ds", stub, runlog, limit=40)
    assert more.new == {"red fox": 15, "arctic fox": 15}
    assert stub.count("img") == before + 30
    assert len(load_manifest(tmp_path / "ds")) == 80


def test_resume_after_a_partial_build_with_bad_urls(tmp_path, stub, runlog):
    stub.set_fault("html")
    _scrape(tmp_path / "ds", stub, runlog, queries=["red fox"], limit=10, thumbnail_fallback=False)
    again = _scrape(tmp_path / "ds", stub, runlog, queries=["red fox"], limit=20, thumbnail_fallback=False)
    # the HTML page is not fetched again: it is remembered as rejected for good
    assert again.rejects == {"known_bad": 1} and again.counts == {"red fox": 20}
    assert stub.count("fault") == 1


def test_resume_through_fresh_stubs_keeps_urls_stable(tmp_path, runlog):
    a = scrape(["red fox"], tmp_path / "ds", limit=10, runlog=runlog, log=lambda m: None)
    b = scrape(["red fox"], tmp_path / "ds", limit=10, runlog=runlog, log=lambda m: None)
    assert a.new == {"red fox": 10} and b.new == {"red fox": 0}
    assert all(r["url"].startswith("stub:/img/") for r in load_manifest(tmp_path / "ds"))


def test_resize_and_image_size(tmp_path, stub, runlog):
    res = _scrape(tmp_path / "ds", stub, runlog, queries=["red fox"], limit=5, size="120x90", resize=60)
    rows = load_manifest(tmp_path / "ds")
    assert res.counts == {"red fox": 5}
    assert {(r["original_width"], r["original_height"]) for r in rows} == {(120, 90)}
    assert {(r["width"], r["height"]) for r in rows} == {(60, 45)}
    assert [r for r in stub.requests if r["kind"] == "search"][0]["params"]["q"] == "red fox imagesize:120x90"


def test_chips_in_manifest(tmp_path, stub, runlog):
    _scrape(tmp_path / "ds", stub, runlog, queries=["red fox"], limit=5, chips="night")
    rows = load_manifest(tmp_path / "ds")
    assert all("online_chips:night" in r["chips"] and "(night)" in r["title"] for r in rows)


def test_stub_with_latency_still_completes_in_parallel(tmp_path, runlog):
    import time

    with SerpApiStub(image_latency=0.05) as slow:
        t = time.perf_counter()
        res = scrape(["red fox"], tmp_path / "ds", limit=40, base_url=slow.base_url, runlog=runlog, workers=8,
                     log=lambda m: None)
        took = time.perf_counter() - t
    assert res.counts == {"red fox": 40}
    assert took < 40 * 0.05  # serial would need 2 s; generous because CI cores are shared


def test_http_errors_and_timeouts_are_rejects(tmp_path):
    from workbench.scrape import Downloader, ImageResult

    with SerpApiStub(image_latency=1.5) as slow:
        items = [ImageResult(query="q", label="a", page=0, position=1, original=f"{slow.origin}/nothing/here.jpg"),
                 ImageResult(query="q", label="a", page=0, position=2,
                             original=f"{slow.origin}/img/red%20fox/-/auto/1.jpg")]
        rep = Downloader(tmp_path / "ds", workers=2, timeout=(2.0, 0.5), retries=0).run(items, {"a": "a"})
    assert dict(rep.rejects) == {"http_error": 1, "timeout": 1}
    assert {r["detail"] for r in rep.reject_rows if r["reason"] == "http_error"} == {"HTTP 404"}
