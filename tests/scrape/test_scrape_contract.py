"""Contract tests: the transcribed SerpApi fixtures, the loopback stub and the client agree on one schema."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hostile import Hostile

from workbench.scrape import SerpApiClient, SerpApiStub
from workbench.scrape.params import BY_NAME, CLIENT_SET, PARAMS, PASSTHROUGH_PARAMS, check_params
from workbench.scrape.schema import problems

FIXTURES = Path(__file__).parent / "fixtures"
SCHEMA_OF = {"google_images_page0.json": "google_images", "google_images_last_page.json": "google_images",
             "error_no_results_200.json": "google_images", "async_processing.json": "google_images",
             "archive_success.json": "google_images", "account.json": "account",
             "error_invalid_key_401.json": "error", "error_out_of_searches_429.json": "error",
             "error_throughput_429.json": "error"}

#: SerpApi's Google Images API parameters as its documentation groups them (transcribed).
DOCUMENTED = {
    "Search Query": ["q"],
    "Geographic Location": ["location", "uule"],
    "Localization": ["google_domain", "gl", "hl", "cr"],
    "Advanced Filters": ["uds", "chips", "tbs", "imgar", "imgsz", "image_color", "image_type", "licenses", "safe",
                         "nfpr", "filter", "period_unit", "period_value", "start_date", "end_date"],
    "Advanced Search": ["as_dt", "as_epq", "as_eq", "as_lq", "as_nlo", "as_nhi", "as_oq", "as_q", "as_qdr", "as_rq",
                        "as_sitesearch"],
    "Pagination": ["ijn"],
    "SerpApi Parameters": ["engine", "device", "no_cache", "async", "zero_trace", "api_key", "output",
                           "json_restrictor"],
}


def _fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


def test_fixtures_say_they_are_transcribed_not_captured():
    text = (FIXTURES / "README.md").read_text()
    assert "transcribed from SerpApi's documented examples" in text and "not captured live" in text
    assert set(SCHEMA_OF) == {p.name for p in FIXTURES.glob("*.json")}


@pytest.mark.parametrize("name", sorted(SCHEMA_OF))
def test_every_fixture_has_the_documented_shape(name):
    assert problems(_fixture(name), SCHEMA_OF[name]) == []
    assert "REDACTED" in json.dumps(_fixture(name)) or "api_key" not in json.dumps(_fixture(name))


def _stub_answers(stub: SerpApiStub) -> dict[str, object]:
    import urllib.error
    import urllib.request

    def get(path: str):
        try:
            with urllib.request.urlopen(stub.origin + path, timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read())
    out = {"page0": get("/search.json?engine=google_images&q=apple&ijn=0"),
           "last": get("/search.json?engine=google_images&q=apple&ijn=1"),
           "past_last": get("/search.json?engine=google_images&q=apple&ijn=5"),
           "processing": get("/search.json?engine=google_images&q=apple&ijn=0&async=true"),
           "account": get("/account.json")}
    stub.set_fault("auth")
    out["401"] = get("/search.json?engine=google_images&q=apple")
    stub.clear_faults()
    stub.set_fault("out_of_searches")
    out["429_out"] = get("/search.json?engine=google_images&q=apple")
    stub.clear_faults()
    stub.set_fault("rate_limit")
    out["429_throughput"] = get("/search.json?engine=google_images&q=apple")
    stub.clear_faults()
    return out


def test_the_stub_serves_the_fixture_shapes(stub):
    got = _stub_answers(stub)
    for key, schema in (("page0", "google_images"), ("last", "google_images"), ("past_last", "google_images"),
                        ("processing", "google_images"), ("account", "account"), ("401", "error"),
                        ("429_out", "error"), ("429_throughput", "error")):
        assert problems(got[key], schema) == [], key
    fx, st = _fixture("google_images_page0.json"), got["page0"]
    # every documented key of the fixture is served by the stub too (tag/in_stock only on some results)
    assert set(fx) - {"shopping_results"} <= set(st)
    for section in ("search_metadata", "search_parameters"):
        assert set(fx[section]) <= set(st[section]), section
    for section, optional in (("images_results", {"tag", "in_stock"}), ("suggested_searches", set()),
                              ("related_searches", set())):
        assert set(fx[section][0]) - optional <= set(st[section][0]), section
    assert set(fx["serpapi_pagination"]) <= set(st["serpapi_pagination"])
    assert "next" not in got["last"]["serpapi_pagination"]
    assert got["past_last"]["error"] == _fixture("error_no_results_200.json")["error"]
    assert got["processing"]["search_metadata"]["status"] == "Processing"
    assert set(_fixture("account.json")) - {"api_key"} <= set(got["account"])
    for key, name in (("401", "error_invalid_key_401.json"), ("429_out", "error_out_of_searches_429.json"),
                      ("429_throughput", "error_throughput_429.json")):
        assert got[key] == _fixture(name), key


def _fixture_server(h: Hostile) -> str:
    """Serve the fixtures the way SerpApi would, over real HTTP."""
    def search(handler):
        q = handler.path
        if "async=true" in q:
            body = _fixture("async_processing.json")
        elif "ijn=1" in q:
            body = _fixture("google_images_last_page.json")
        else:
            body = _fixture("google_images_page0.json")
        handler._send(200, json.dumps(body).encode(), "application/json")
    archive_hits = []

    def archive(handler):
        archive_hits.append(1)
        body = _fixture("async_processing.json") if len(archive_hits) == 1 else _fixture("archive_success.json")
        handler._send(200, json.dumps(body).encode(), "application/json")
    h.route("/search.json", search)
    h.route("/searches/6633aa1b2c3d4e5f60718296.json", archive)
    h.route("/account.json", h.ok(json.dumps(_fixture("account.json")).encode(), "application/json"))
    return h.url("/search.json")


def test_the_client_reads_the_fixtures_over_http():
    with Hostile() as h, SerpApiClient(base_url=_fixture_server(h), retries=0) as c:
        pages = list(c.iter_pages("apple", pages=5))
        assert [p.page for p in pages] == [0, 1]  # page 1 has no `next`: paging stops there
        p0 = pages[0]
        assert p0.metadata["id"] == "6633aa1b2c3d4e5f60718293" and p0.metadata["status"] == "Success"
        assert p0.related == ["apple logo", "red apple fruit"] and p0.suggested == ["logo", "fruit"]
        assert p0.shopping == 1 and p0.has_next
        img = p0.images[1]
        assert img.tag == "Product" and img.is_product is True and img.thumbnail.startswith("https://serpapi.com/")
        assert img.search_id == p0.metadata["id"] and img.original_width == 1200
        assert c.resolve_chips("apple", "Logo") == "q:apple,online_chips:logo:REDACTEDTOKEN1"
        done = c.search("apple", **{"async": "true"})  # completed from the Search Archive
        assert done["search_metadata"]["status"] == "Success" and len(done["images_results"]) == 4
        acct = c.account()
        assert acct["total_searches_left"] == 5958 and "api_key" not in acct
        assert c.searches == 4  # two pages, the chips look-up, the async search; archive polls are free


def test_the_parameter_table_is_the_documented_one():
    assert [(p.group, p.name) for p in PARAMS] == [(g, n) for g, names in DOCUMENTED.items() for n in names]
    assert set(CLIENT_SET) <= set(BY_NAME) and "lr" not in BY_NAME and "time_period" not in BY_NAME
    accepted = check_params({"as_sitesearch": "example.com", "as_epq": "red fox", "json_restrictor": "images_results",
                             "zero_trace": True, "uds": "ADvngMg", "imgar": "w", "period_unit": "d",
                             "period_value": 7, "device": "mobile"})
    assert accepted["zero_trace"] == "true" and accepted["period_value"] == "7"
    assert set(PASSTHROUGH_PARAMS) == {n for names in DOCUMENTED.values() for n in names} - set(CLIENT_SET)
