"""The scrape panel, driven like a user would: set values, click Start, watch the bars."""
from __future__ import annotations

import pytest

from workbench.widgets.scrape import ScrapePanel, parse_queries


def test_parse_queries():
    assert parse_queries("red fox\n\n# comment\nArctic: arctic fox\n") == (["red fox", "arctic fox"],
                                                                          ["red fox", "Arctic"])
    with pytest.raises(ValueError, match="queries: enter at least one query"):
        parse_queries("  \n# only a comment")


def test_click_runs_in_the_background_with_live_progress(tmp_path, runlog):
    from workbench.scrape import SerpApiStub

    with SerpApiStub(image_latency=0.01) as stub:
        panel = ScrapePanel(out=tmp_path / "ds", base_url=stub.base_url, runlog=runlog, backoff=0.01, workers=4)
        panel.queries.value = "Fox: red fox\narctic fox"
        panel.limit.value = 15
        panel.chips.value = "night"
        seen: list[int] = []
        panel.overall.observe(lambda ch: seen.append(ch["new"]), names="value")
        panel.start.click()
        assert panel.start.disabled  # running
        res = panel.wait(60)
    assert res.counts == {"Fox": 15, "arctic fox": 15}
    assert not panel.start.disabled
    assert len(set(seen)) > 5  # the bar moved many times while the thread ran, not once at the end
    bar, text = panel.bars["Fox"]
    assert bar.value == bar.max and text.value.startswith("15 of 15 images")
    assert "30 new" in panel.overall_text.value
    assert panel.preview.value[:8] == b"\x89PNG\r\n\x1a\n" and panel.preview.layout.display is None
    assert "30 images" in panel.status.value
    assert runlog.get(res.run_id)["config"]["chips"] == "night"


def test_bad_input_is_shown_and_nothing_starts(tmp_path, runlog):
    panel = ScrapePanel(out=tmp_path / "ds", runlog=runlog)
    panel.queries.value = "red fox"
    panel.size.value = "big"
    panel.start.click()
    assert panel.thread is None and "size: &#x27;big&#x27; is not an image size" in panel.status.value
    panel.size.value = ""
    panel.queries.value = ""
    panel.start.click()
    assert panel.thread is None and "enter at least one query" in panel.status.value
    assert runlog.find(kind="scrape") == []


def test_errors_from_the_thread_reach_the_panel(tmp_path, runlog):
    from workbench.scrape import SerpApiAuthError, SerpApiStub

    with SerpApiStub(faults={"auth": True}) as stub:
        panel = ScrapePanel(out=tmp_path / "ds", base_url=stub.base_url, runlog=runlog, queries="red fox")
        panel.start.click()
        with pytest.raises(SerpApiAuthError):
            panel.wait(30)
    assert "Invalid API key" in panel.status.value and "b00020" in panel.status.value
    assert panel.preview.layout.display == "none"
    assert not panel.start.disabled


def test_stop_button(tmp_path, runlog):
    import time

    from workbench.scrape import SerpApiStub

    with SerpApiStub(image_latency=0.05) as stub:
        panel = ScrapePanel(out=tmp_path / "ds", base_url=stub.base_url, runlog=runlog, workers=2,
                            queries="red fox", limit=100)
        assert panel.stop.disabled
        panel.start.click()
        assert not panel.stop.disabled
        deadline = time.monotonic() + 30
        while panel.overall.value < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        panel.stop.click()
        res = panel.wait(30)
    assert res.stopped and 5 <= res.total < 100
    assert "stopped early" in panel.status.value and panel.stop.disabled and not panel.start.disabled
    assert runlog.get(res.run_id)["status"] == "stopped"
