"""The bounded fetcher against hostile loopback servers: deadlines, Stop, Retry-After, the SSRF guard."""
from __future__ import annotations

import threading

import pytest
from hostile import Hostile, timed

from workbench.scrape.net import AddressGuard, Fetcher, FetchError, retry_after_seconds


@pytest.fixture()
def hostile():
    with Hostile() as h:
        yield h


def _fetcher(h: Hostile, **kw) -> Fetcher:
    kw.setdefault("deadline", 0.8)
    kw.setdefault("backoff", 0.01)
    return Fetcher(guard=AddressGuard(allow=[h.origin]), **kw)


@pytest.mark.parametrize("route", ["trickle", "header_trickle", "stall"])
def test_total_deadline_cuts_slow_answers(hostile, route):
    behaviour = {"trickle": hostile.trickle(b"x" * 5000, 0.05),  # every read succeeds; the whole never ends
                 "header_trickle": hostile.trickle(b"", 0.05, header_trickle=True),
                 "stall": hostile.stall()}[route]
    url = hostile.route("/slow", behaviour)
    with _fetcher(hostile, timeout=(2.0, 10.0), retries=0) as f:
        err, took = timed(lambda: f.get(url))
    assert isinstance(err, FetchError) and err.reason == "timeout", err
    assert 0.7 <= took < 1.6, took


def test_stop_abandons_an_in_flight_fetch_at_once(hostile):
    url = hostile.route("/slow", hostile.trickle(b"x" * 5000, 0.1))
    stop = threading.Event()
    f = Fetcher(deadline=60, guard=AddressGuard(allow=[hostile.origin]), stop=stop)
    threading.Timer(0.3, stop.set).start()
    err, took = timed(lambda: f.get(url))
    assert isinstance(err, FetchError) and err.reason == "stopped" and took < 0.8, (err, took)
    err, took = timed(lambda: f.get(url))  # and nothing new starts
    assert err.reason == "stopped" and took < 0.1


def test_abort_cuts_every_request_of_a_fetcher(hostile):
    url = hostile.route("/slow", hostile.stall())
    f = Fetcher(deadline=60, guard=AddressGuard(allow=[hostile.origin]))
    out: list = []
    threads = [threading.Thread(target=lambda: out.append(timed(lambda: f.get(url)))) for _ in range(3)]
    for t in threads:
        t.start()
    threading.Timer(0.3, f.abort).start()
    for t in threads:
        t.join(5)
    assert len(out) == 3 and all(e.reason == "stopped" and s < 1.0 for e, s in out), out


def test_retry_after_is_capped_and_recorded(hostile):
    calls = []

    def once_429(h):
        calls.append(1)
        if len(calls) == 1:
            h._send(429, b"slow down", "text/plain", {"Retry-After": "3600"})
        else:
            h._send(200, b"ok", "text/plain")
    url = hostile.route("/ra", once_429)
    with _fetcher(hostile, deadline=5, retry_after_cap=0.3) as f:
        resp, took = timed(lambda: f.get(url))
    assert resp.status == 200 and resp.body == b"ok" and resp.retry_after_capped == 3600
    assert 0.3 <= took < 1.5 and f.capped == [(3600.0, 0.3)]


def test_retry_after_forms():
    assert retry_after_seconds("7") == 7.0 and retry_after_seconds("soon") is None and retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait


def test_body_cap_and_content_length(hostile):
    big = hostile.route("/big", hostile.ok(b"x" * 5000))
    with _fetcher(hostile, max_bytes=1000) as f:
        err, _ = timed(lambda: f.get(big))
    assert err.reason == "too_large" and "Content-Length 5000" in err.detail


# -- SSRF ---------------------------------------------------------------------------------
@pytest.mark.parametrize("url,reason,why", [
    ("file:///etc/passwd", "blocked_url", "scheme 'file'"),
    ("gopher://example.com/", "blocked_url", "scheme 'gopher'"),
    ("http://127.0.0.1:1/", "blocked_address", "loopback"),
    ("http://10.1.2.3/", "blocked_address", "private"),
    ("http://192.168.0.10/", "blocked_address", "private"),
    ("http://172.16.5.5/", "blocked_address", "private"),
    ("http://169.254.169.254/latest/meta-data/", "blocked_address", "link-local"),
    ("http://[::1]:8080/", "blocked_address", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "blocked_address", "loopback"),
    ("http://0.0.0.0/", "blocked_address", "unspecified"),
    ("http://100.64.0.1/", "blocked_address", "non-public"),
    ("http://localhost:1/", "blocked_address", "resolves to a loopback"),
])
def test_private_addresses_and_other_schemes_are_refused(url, reason, why):
    err, took = timed(lambda: Fetcher(deadline=2, guard=AddressGuard()).get(url))
    assert isinstance(err, FetchError) and err.reason == reason and why in err.detail, err
    assert took < 0.5  # refused before (or at) connecting: nothing was sent


def test_a_redirect_to_an_internal_service_is_refused(hostile):
    with Hostile() as internal:  # "an internal service": another loopback server, not allowed
        secret = internal.route("/admin", internal.ok(b"internal secrets"))
        url = hostile.route("/r", hostile.redirect(secret))
        with _fetcher(hostile) as f:
            err, _ = timed(lambda: f.get(url))
        assert err.reason == "blocked_address" and "loopback" in err.detail
        assert internal.hits == []  # no GET ever reached it


def test_allowed_origin_and_redirects_within_it(hostile):
    hostile.route("/img", hostile.ok(b"pixels"))
    url = hostile.route("/r", hostile.redirect("/img"))
    with _fetcher(hostile) as f:
        resp = f.get(url)
    assert resp.body == b"pixels" and len(resp.redirects) == 1
    with Fetcher(deadline=2, guard=AddressGuard()) as strict:
        err, _ = timed(lambda: strict.get(url))
    assert err.reason == "blocked_address"


def test_secret_params_do_not_follow_redirects(hostile):
    hostile.route("/elsewhere", hostile.ok(b"x"))
    url = hostile.route("/r", hostile.redirect("/elsewhere"))
    with _fetcher(hostile) as f:
        f.get(url, secret=lambda: {"api_key": "k-123"})
    assert hostile.hits[0].endswith("api_key=k-123") and "api_key" not in hostile.hits[1]
