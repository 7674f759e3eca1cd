"""The SerpApi key never reaches a file, record, log line, exception text, repr or output."""
from __future__ import annotations

import logging
import os
import traceback
from pathlib import Path
from urllib.parse import quote_plus

import pytest

from workbench.scrape import SerpApiClient, SerpApiError, scrape

KEY = "sk-SECRET-key/with+odd=chars-0123456789abcdef"
NEEDLES = [KEY.encode(), quote_plus(KEY).encode(), b"0123456789abcdef"]


def _scan_files(*roots: Path) -> list[str]:
    hits, scanned = [], 0
    for root in roots:
        for p in Path(root).rglob("*"):
            if p.is_file():
                scanned += 1
                data = p.read_bytes()
                hits += [f"{p}: {n!r}" for n in NEEDLES if n in data]
    assert scanned > 0
    return hits


def _clean(text: str) -> bool:
    return all(n.decode() not in text for n in NEEDLES)


def _full(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


def test_key_is_absent_from_everything_written(tmp_path, stub, runlog, caplog, capsys):
    caplog.set_level(logging.DEBUG)  # urllib3 logs every request URL at DEBUG
    res = scrape(["red fox", "arctic fox"], tmp_path / "ds", limit=12, api_key=KEY, base_url=stub.base_url,
                 runlog=runlog, chips="night", backoff=0.01)
    assert res.api == "serpapi" and res.total == 24
    stub.set_fault("rate_limit", times=1)  # a retry logs the URL too
    scrape(["blue squares"], tmp_path / "ds", limit=3, api_key=KEY, base_url=stub.base_url, runlog=runlog,
           backoff=0.01)
    assert _scan_files(tmp_path, os.environ["WORKBENCH_HOME"]) == []
    assert any("api_key=***" in r.getMessage() for r in caplog.records)  # the lines exist, scrubbed
    assert _clean(caplog.text)
    out = capsys.readouterr()
    assert _clean(out.out + out.err)
    assert _clean(repr(res) + res.summary() + str(res.to_dict()))
    assert _clean(str(runlog.get(res.run_id)))


@pytest.mark.parametrize("fault", ["auth", "server_error", "rate_limit"])
def test_key_is_absent_from_api_errors_and_failed_runs(tmp_path, stub, runlog, fault):
    stub.set_fault(fault)
    with pytest.raises(SerpApiError) as ei:
        scrape(["red fox"], tmp_path / "ds", api_key=KEY, base_url=stub.base_url, runlog=runlog, backoff=0.01,
               retries=1, log=lambda m: None)
    assert _clean(_full(ei.value))
    (rec,) = runlog.find(kind="scrape")
    assert rec["status"] == "failed" and _clean(str(rec))
    assert _scan_files(tmp_path) == []


def test_key_is_absent_from_per_query_errors(tmp_path, stub, runlog):
    stub.set_fault("empty")
    res = scrape(["red fox"], tmp_path / "ds", api_key=KEY, base_url=stub.base_url, runlog=runlog, backoff=0.01,
                 retries=1, log=lambda m: None)
    assert res.errors and _clean(str(res.errors)) and _clean(str(runlog.get(res.run_id)))


def test_key_is_absent_from_connection_and_timeout_errors(stub):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with SerpApiClient(api_key=KEY, base_url=f"http://127.0.0.1:{port}/search.json", retries=0) as c:
        with pytest.raises(SerpApiError) as ei:
            c.search("red fox")
    text = _full(ei.value)
    assert "could not connect" in text and "Connection refused" in text and _clean(text)
    stub.set_fault("slow", seconds=0.5)
    with SerpApiClient(api_key=KEY, base_url=stub.base_url, retries=0, timeout=(1, 0.1)) as c:
        with pytest.raises(SerpApiError) as ei:
            c.search("red fox")
    text = _full(ei.value)
    assert "timed out" in text and _clean(text)
    assert len(str(ei.value).splitlines()) == 1 and len(str(ei.value)) < 200  # one readable line


def test_key_is_absent_from_reprs():
    c = SerpApiClient(api_key=KEY, base_url="https://example.invalid/search.json?api_key=" + KEY)
    assert _clean(repr(c)) and "api_key='***'" in repr(c)
    assert _clean(str(vars(c).get("base_url", ""))) is False  # it is kept for requests...
    assert _clean(repr(c))                                     # ...but never shown


def test_key_in_env_only_is_not_echoed(tmp_path, stub, runlog, monkeypatch, capsys):
    monkeypatch.setenv("SERPAPI_API_KEY", KEY)
    lines: list[str] = []
    res = scrape(["red fox"], tmp_path / "ds", limit=2, base_url=stub.base_url, runlog=runlog, log=lines.append)
    assert res.api == "serpapi" and all(_clean(line) for line in lines)
    assert _scan_files(tmp_path) == []
