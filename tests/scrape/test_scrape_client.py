"""SerpApi client against the loopback stub over real HTTP: pagination, chips, errors, retries."""
from __future__ import annotations

import pytest

from workbench.scrape import (ChipsNotFound, SerpApiAuthError, SerpApiClient, SerpApiConnectionError,
                              SerpApiNoResults, SerpApiNotFound, SerpApiOutOfSearches, SerpApiRateLimited,
                              SerpApiServerError, parse_size, with_image_size)
from workbench.scrape.stub import INVALID_KEY, NO_RESULTS


def test_response_has_serpapi_schema(client):
    data = client.search("red fox")
    assert {"search_metadata", "search_parameters", "suggested_searches", "images_results",
            "serpapi_pagination"} <= set(data)
    r = data["images_results"][0]
    assert {"position", "thumbnail", "source", "title", "link", "original", "original_width",
            "original_height", "is_product"} <= set(r)
    s = data["suggested_searches"][0]
    assert {"name", "link", "chips", "serpapi_link", "thumbnail"} <= set(s)
    assert len(data["images_results"]) == 100
    assert data["search_parameters"]["engine"] == "google_images"
    assert data["search_parameters"]["ijn"] == "0"


def test_pagination_one_search_per_page_and_stops_at_the_end(stub, client):
    items = list(client.iter_images("red fox", pages=5))
    # the stub holds 150 results: page 0 (100) + page 1 (50); page 1 has no `next`, so no 3rd search
    assert len(items) == 150
    assert [i.page for i in items].count(0) == 100 and [i.page for i in items].count(1) == 50
    assert stub.count("search") == 2
    assert [r["params"]["ijn"] for r in stub.requests if r["kind"] == "search"] == ["0", "1"]
    assert len({i.original for i in items}) == 150


def test_pages_limits_the_searches(stub, client):
    items = list(client.iter_images("red fox", pages=1, label="fox"))
    assert len(items) == 100 and stub.count("search") == 1
    assert all(i.label == "fox" and i.query == "red fox" for i in items)


def test_sends_documented_parameters(stub, client):
    client.search("red fox", page=1, safe="active", imgsz="l", image_type="photo", no_cache="true")
    p = stub.requests[-1]["params"]
    assert p["engine"] == "google_images" and p["q"] == "red fox" and p["ijn"] == "1"
    assert p["google_domain"] == "google.com" and p["gl"] == "us" and p["hl"] == "en"
    assert p["safe"] == "active" and p["imgsz"] == "l" and p["image_type"] == "photo"


def test_unknown_parameter_is_refused_before_any_request(stub, client):
    with pytest.raises(ValueError, match=r"params.colour: unknown parameter.*allowed:.*image_color"):
        client.search("red fox", colour="red")
    assert stub.count("search") == 0


def test_chips_by_name_resolved_on_page_zero_and_used_for_every_page(stub, client):
    items = list(client.iter_images("red fox", pages=2, chips_name="Outline"))
    assert len(items) == 150
    chips = {i.chips for i in items}
    assert len(chips) == 1 and "online_chips:outline" in chips.pop()
    assert all("(outline)" in i.title for i in items)
    searches = [r["params"] for r in stub.requests if r["kind"] == "search"]
    # one lookup (page 0, no chips) then exactly one search per page with the chips string
    assert len(searches) == 3
    assert "chips" not in searches[0]
    assert [s["ijn"] for s in searches[1:]] == ["0", "1"] and all("chips" in s for s in searches[1:])


def test_chips_lookup_is_cached_per_query(stub, client):
    client.resolve_chips("red fox", "night")
    client.resolve_chips("red fox", "cartoon")
    assert stub.count("search") == 1


def test_unknown_chips_name_lists_the_available_ones(client):
    with pytest.raises(ChipsNotFound) as ei:
        list(client.iter_images("red fox", chips_name="watercolour"))
    msg = str(ei.value)
    assert "'watercolour'" in msg and "'outline'" in msg and "'night'" in msg and "'cartoon'" in msg
    assert isinstance(ei.value, ValueError)


def test_image_size_operator():
    assert with_image_size("red fox", "640x480") == "red fox imagesize:640x480"
    assert with_image_size("red fox imagesize:10x10", (32, 24)) == "red fox imagesize:32x24"
    assert with_image_size("red fox", None) == "red fox"
    assert parse_size("1920 x 1080") == (1920, 1080)
    for bad in ("big", "0x10", "10x", "-5x5"):
        with pytest.raises(ValueError, match=r"size: .* (not an image size|must be positive)"):
            parse_size(bad)


def test_stub_serves_the_requested_size(client):
    items = list(client.iter_images("red fox", size="120x90"))
    assert {(i.original_width, i.original_height) for i in items} == {(120, 90)}


# -- errors and retries -----------------------------------------------------------------
def test_401_is_an_auth_error_with_serpapis_message_and_not_retried(stub, client):
    stub.set_fault("auth")
    with pytest.raises(SerpApiAuthError) as ei:
        client.search("red fox")
    assert ei.value.status == 401 and ei.value.message == INVALID_KEY
    assert stub.count("search") == 1


def test_429_then_ok_is_retried_with_backoff(stub, client):
    stub.set_fault("rate_limit", times=2)
    data = client.search("red fox")
    assert len(data["images_results"]) == 100
    assert stub.count("search") == 3  # two 429s, then the answer


def test_throughput_429_for_good_raises_rate_limited_after_the_retries(stub, client):
    stub.set_fault("rate_limit")
    with pytest.raises(SerpApiRateLimited, match="throughput") as ei:
        client.search("red fox")
    assert not isinstance(ei.value, SerpApiOutOfSearches)
    assert stub.count("search") == client.retries + 1


def test_500_raises_server_error_after_retries(stub, client):
    stub.set_fault("server_error")
    with pytest.raises(SerpApiServerError) as ei:
        client.search("red fox")
    assert ei.value.status == 500 and "retry" in ei.value.message
    assert stub.count("search") == client.retries + 1


def test_500_once_recovers(stub, client):
    stub.set_fault("server_error", times=1)
    assert client.search("red fox")["images_results"]
    assert stub.count("search") == 2


def test_no_results_is_an_answer_and_is_not_retried(stub, client):
    stub.set_fault("empty")
    with pytest.raises(SerpApiNoResults) as ei:
        list(client.iter_images("red fox"))
    assert ei.value.message == NO_RESULTS and ei.value.status == 200
    assert stub.count("search") == 1  # a retry would be another (billed) search with the same answer


def test_slow_response_times_out_then_retry_succeeds(stub):
    stub.set_fault("slow", times=1, seconds=2.0)
    with SerpApiClient(base_url=stub.base_url, retries=2, backoff=0.01, timeout=(2.0, 0.6)) as c:
        assert len(c.search("red fox")["images_results"]) == 100
    assert stub.count("search") == 2


def test_slow_for_good_raises_connection_error(stub):
    stub.set_fault("slow", seconds=0.6)
    with SerpApiClient(base_url=stub.base_url, retries=1, backoff=0.01, timeout=(1.0, 0.2)) as c:
        with pytest.raises(SerpApiConnectionError, match="timed out"):
            c.search("red fox")


def test_404_is_not_found(stub):
    with SerpApiClient(base_url=stub.origin + "/nope.json", retries=0) as c:
        with pytest.raises(SerpApiNotFound, match="Unsupported path"):
            c.search("red fox")


def test_unreachable_endpoint_is_a_connection_error():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with SerpApiClient(base_url=f"http://127.0.0.1:{port}/search.json", retries=1, backoff=0.01) as c:
        with pytest.raises(SerpApiConnectionError, match="could not connect"):
            c.search("red fox")


def test_stub_rejects_unknown_fault_names():
    from workbench.scrape import SerpApiStub

    with pytest.raises(ValueError, match=r"fault: 'meteor' .* allowed: auth, rate_limit"):
        SerpApiStub(faults={"meteor": True})


def test_400_is_a_bad_request_with_the_message(stub, client):
    from workbench.scrape import SerpApiBadRequest

    with pytest.raises(SerpApiBadRequest, match="Invalid `chips` parameter"):
        client.search("red fox", chips="not-a-chips-string")
    assert stub.count("search") == 1  # 4xx other than 429 is not retried


def test_status_to_exception_table():
    from workbench.scrape import SerpApiBadRequest, SerpApiError
    from workbench.scrape.client import error_for_status

    assert error_for_status(400) is SerpApiBadRequest
    assert error_for_status(401) is SerpApiAuthError and error_for_status(403) is SerpApiAuthError
    assert error_for_status(404) is SerpApiNotFound and error_for_status(429) is SerpApiRateLimited
    assert error_for_status(502) is SerpApiServerError and error_for_status(418) is SerpApiError


def test_stub_serves_from_the_command_line():
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "workbench", "stub-serpapi", "--port", "0", "--results", "120"],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "SerpApi stub serving Google Images at http://127.0.0.1:" in line
        url = line.split(" at ", 1)[1].split()[0]
        with SerpApiClient(base_url=url, retries=0) as c:
            assert len(list(c.iter_images("red fox", pages=3))) == 120
    finally:
        proc.terminate()
        proc.wait(timeout=10)
