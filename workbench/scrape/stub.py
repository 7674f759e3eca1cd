"""A SerpApi-compatible loopback server for offline work and tests.

``SerpApiStub`` serves ``engine=google_images`` searches in SerpApi's schema (the same
shapes as the recorded fixtures; a contract test checks both against one schema), the
Search Archive (``/searches/{id}.json``), the Account API (``/account.json``) and the
images themselves, from one stdlib ``ThreadingHTTPServer`` on a free 127.0.0.1 port.
Fault switches reproduce what the real service and the web do to a scraper:

================  =======================================================================
switch            effect
================  =======================================================================
auth              searches answer 401 ``{"error": "Invalid API key..."}``
rate_limit        searches answer a throughput 429 (``retry_after=`` sends ``Retry-After``)
out_of_searches   searches answer 429 "Your account has run out of searches."
server_error      searches answer 500
empty             searches answer 200 with the "hasn't returned any results" error
transient_error   searches answer 200 with a passing error ("... please try again.")
slow              searches wait ``seconds`` (default 2)
processing        searches answer "Processing"; the archive has them after ``seconds`` (0.3)
malformed         answers break: ``shape=`` images_results_string | position_string |
                  pagination_list | not_object
trickle_search    search bodies arrive 1 byte per ``interval`` (default 1 s)
stall_search      searches are accepted and never answered
html, svg,        the result at ``stub_content.FAULT_SLOTS[name]`` is an HTML page, an SVG,
truncated, huge,  half a JPEG, a PNG claiming 20000×20000 px, > 20 MB without a length,
oversize
redirect          ... a 302 to a real image (followed and accepted)
trickle, stall    ... an image sent 1 byte per ``interval`` / never answered
private_redirect  ... a 302 to ``target`` (default the cloud metadata address)
image_rate_limit  ... a 429 with ``Retry-After: retry_after`` (default 3600)
broken_original   ... a 404 original whose thumbnail works (the thumbnail fallback)
megapixel         8 results are real 81-megapixel PNGs (236 KB each on the wire)
bad_original      one result has no ``original``, one a ``file:`` URL
key_in_urls       server-supplied links carry ``api_key=...``
near_duplicates   resized / re-encoded / slightly cropped copies of other results on every
                  page, and one stock photo under every query (``truth_of`` tells originals)
products          every 5th result is a product (``is_product``, ``tag``); shopping results
duplicate         two results repeat position 1: one with the same URL, one the same bytes
================  =======================================================================

``times`` (optional) limits a fault to its first N hits. ``async=true`` searches are always
answered "Processing" and completed through the archive. ``searches_left=N`` makes the
account run out after N searches. The stub never logs request lines (they would hold the
API key) and keeps its own request log in memory with ``api_key`` redacted. Running stubs
are listed by :func:`running_origins`: the downloader's address guard lets exactly those
loopback origins through.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import stub_content as sc
from .client import parse_size
from .stub_content import INVALID_KEY, NO_RESULTS, chip_name, chips_string, truth_of  # noqa: F401 (re-exported)
from .stub_images import ImageRoutes

FAULTS = ("auth", "rate_limit", "out_of_searches", "server_error", "empty", "transient_error", "slow", "processing", "malformed",
          "trickle_search", "stall_search", "html", "truncated", "huge", "oversize", "svg", "redirect", "trickle",
          "stall", "private_redirect", "image_rate_limit", "broken_original", "megapixel", "bad_original",
          "key_in_urls", "near_duplicates", "products", "duplicate")
SEARCH_FAULTS = ("auth", "rate_limit", "out_of_searches", "server_error", "empty", "transient_error", "slow",
                 "processing", "malformed", "trickle_search", "stall_search")
#: What the ``key_in_urls`` switch plants in server-supplied links.
SERVER_KEY = "SERVER-SUPPLIED-KEY-0123"
FAULT_SLOTS = sc.FAULT_SLOTS
DUPLICATE_URL_SLOT, DUPLICATE_CONTENT_SLOT = sc.DUPLICATE_URL_SLOT, sc.DUPLICATE_CONTENT_SLOT
_RUNNING: set[str] = set()
_RUNNING_LOCK = threading.Lock()


def running_origins() -> set[str]:
    """Origins (``http://127.0.0.1:PORT``) of the stubs serving in this process."""
    with _RUNNING_LOCK:
        return set(_RUNNING)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    stub: "SerpApiStub"

    def handle_error(self, request: Any, client_address: Any) -> None:  # clients hanging up is normal
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes; with Nagle on, a keep-alive client waits
    # ~40 ms for the delayed ACK on every response
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # request lines hold the api_key
        pass

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        try:
            self.server.stub._dispatch(self)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True

    def send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.send(status, json.dumps(obj).encode(), "application/json; charset=utf-8", headers)

    def trickle(self, body: bytes, ctype: str, interval: float, closing: threading.Event) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        for i in range(len(body)):
            if closing.wait(interval):
                break
            self.wfile.write(body[i:i + 1])
            self.wfile.flush()
        self.close_connection = True


class SerpApiStub(ImageRoutes):
    """A loopback SerpApi for Google Images. Use as a context manager::

        with SerpApiStub() as stub:
            client = SerpApiClient(base_url=stub.base_url)

    Args:
        results_per_query: images each query has (default 150: a full page and half another).
        image_latency: seconds every image response waits.
        search_latency: seconds every search waits.
        faults: ``{name: True | times}`` switched on from the start (see :data:`FAULTS`).
        searches_left: the account's searches (``None``: plenty); each search spends one.
        related: ``{query: [related searches]}`` (default: derived from the query's words).
        port: 0 picks a free port.
    """

    def __init__(self, *, results_per_query: int = 150, image_latency: float = 0.0, search_latency: float = 0.0,
                 faults: dict[str, Any] | None = None, searches_left: int | None = None,
                 related: dict[str, list[str]] | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        if results_per_query < 1:
            raise ValueError(f"results_per_query: {results_per_query!r} must be >= 1")
        self.results_per_query = int(results_per_query)
        self.image_latency, self.search_latency = float(image_latency), float(search_latency)
        self.searches_left = searches_left
        self.related = dict(related or {})
        self.host, self.port = host, int(port)
        self._faults: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        #: one dict per request: ``{"path", "kind", "params"}`` (``api_key`` redacted)
        self.requests: list[dict[str, Any]] = []
        self.billed = 0
        self._archive: dict[str, tuple[dict[str, str], float]] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._cache: dict[tuple, tuple[bytes, str]] = {}
        for name, v in (faults or {}).items():
            self.set_fault(name, times=None if v is True else int(v))

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> "SerpApiStub":
        """Bind the port and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._closing.clear()
        self._server = _Server((self.host, self.port), _Handler)
        self._server.stub = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=f"serpapi-stub-{self.port}", daemon=True)
        self._thread.start()
        with _RUNNING_LOCK:
            _RUNNING.add(self.origin)
        return self

    def stop(self) -> None:
        """Stop serving and release the port (stalled and trickling answers end too)."""
        self._closing.set()
        if self._server is not None:
            with _RUNNING_LOCK:
                _RUNNING.discard(self.origin)
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "SerpApiStub":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The search endpoint, to pass as ``base_url`` (like ``https://serpapi.com/search.json``)."""
        return f"{self.origin}/search.json"

    def __repr__(self) -> str:
        state = "serving" if self._server else "stopped"
        return f"SerpApiStub({self.base_url if self._server else 'unbound'}, {state}, faults={sorted(self._faults)})"

    # -- faults --------------------------------------------------------------------
    def set_fault(self, name: str, times: int | None = None, **options: Any) -> None:
        """Switch a fault on (``times``: only its first N hits; options as in the table above)."""
        if name not in FAULTS:
            raise ValueError(f"fault: {name!r} is not a fault switch; allowed: {', '.join(FAULTS)}")
        with self._lock:
            self._faults[name] = {"left": times, **options}
        if name == "megapixel":
            sc.megapixel_png()  # build the 81-MP body now, not while a client's deadline runs

    def clear_faults(self, *names: str) -> None:
        """Switch the named faults (default: all) off."""
        with self._lock:
            for n in names or list(self._faults):
                self._faults.pop(n, None)

    @property
    def faults(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: dict(v) for k, v in self._faults.items()}

    def _hit(self, name: str) -> dict[str, Any] | None:
        """Consume one hit of a fault; its options if it fires, else None."""
        with self._lock:
            f = self._faults.get(name)
            if f is None:
                return None
            if f["left"] is not None:
                if f["left"] <= 0:
                    return None
                f["left"] -= 1
            return dict(f)

    def _on(self) -> set[str]:
        with self._lock:
            return {k for k, f in self._faults.items() if f["left"] is None or f["left"] > 0}

    def _opt(self, name: str, key: str, default: Any) -> Any:
        with self._lock:
            return (self._faults.get(name) or {}).get(key, default)

    def count(self, kind: str = "search") -> int:
        """How many requests of ``kind`` (``search``, ``img``, ``thumb``, ``fault``, ``near``, ...) arrived."""
        with self._lock:
            return sum(1 for r in self.requests if r["kind"] == kind)

    # -- routing ---------------------------------------------------------------------
    def _dispatch(self, h: _Handler) -> None:
        parts = urlsplit(h.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        path = parts.path
        kind = path.strip("/").split("/", 1)[0] or "root"
        kind = {"search.json": "search", "account.json": "account"}.get(kind, kind)
        shown = {k: ("***" if k == "api_key" else v) for k, v in params.items()}
        with self._lock:
            self.requests.append({"path": path, "kind": kind, "params": shown})
        if kind == "search":
            self._search(h, params)
        elif kind == "searches":
            self._archived(h, path)
        elif kind == "account":
            self._account(h)
        elif kind in ("img", "thumb", "near"):
            self.serve_image(h, path, kind)
        elif kind == "fault":
            self.serve_fault_image(h, path)
        elif kind == "redirect":
            h.send(302, b"", "text/plain", {"Location": self.origin + "/" + path.split("/", 2)[2]})
        elif kind == "page":
            h.send(200, b"<!doctype html><html><body>source page</body></html>", "text/html; charset=utf-8")
        else:
            h.send_json(404, {"error": f"Unsupported path: {path}"})

    def _search(self, h: _Handler, p: dict[str, str]) -> None:
        if self.search_latency:
            time.sleep(self.search_latency)
        slow = self._hit("slow")
        if slow:
            time.sleep(float(slow.get("seconds", 2.0)))
        if self._hit("stall_search"):
            self._closing.wait(120)
            h.close_connection = True
            return
        if self._hit("auth"):
            return h.send_json(401, {"error": INVALID_KEY})
        out = self._hit("out_of_searches")
        with self._lock:
            spent = self.searches_left is not None and self.billed >= self.searches_left
            if not spent and not out:
                self.billed += 1
        if out or spent:
            return h.send_json(429, {"error": sc.OUT_OF_SEARCHES})
        rl = self._hit("rate_limit")
        if rl:
            hdrs = {"Retry-After": str(rl["retry_after"])} if "retry_after" in rl else None
            return h.send_json(429, {"error": rl.get("message", sc.THROUGHPUT)}, hdrs)
        if self._hit("server_error"):
            return h.send_json(500, {"error": "Internal server error; please retry."})
        if self._hit("transient_error"):
            return h.send_json(200, {"search_metadata": {"id": "transient", "status": "Error"},
                                     "error": "Something went wrong on our side, please try again."})
        if p.get("engine") != "google_images":
            return h.send_json(400, {"error": f"Unsupported `{p.get('engine')}` search engine."})
        q = (p.get("q") or "").strip()
        if not q:
            return h.send_json(400, {"error": "Missing query `q` parameter."})
        try:
            page = int(p.get("ijn") or 0)
        except ValueError:
            return h.send_json(400, {"error": f"Invalid `ijn` parameter: {p.get('ijn')}"})
        chips = p.get("chips") or None
        if chips and chip_name(chips) is None:
            return h.send_json(400, {"error": "Invalid `chips` parameter."})
        sid = sc.search_id(q, chips, page)
        processing = self._hit("processing")
        if p.get("async") == "true" or processing:
            delay = float((processing or {}).get("seconds", 0.3))
            with self._lock:
                self._archive[sid] = (dict(p), time.monotonic() + delay)
            return h.send_json(200, {"search_metadata": sc.metadata(self.origin, sid, q, page, "Processing"),
                                     "search_parameters": {"engine": "google_images", "q": q}})
        with self._lock:
            self._archive[sid] = (dict(p), 0.0)
        self._answer(h, p)

    def _answer(self, h: _Handler, p: dict[str, str]) -> None:
        q, page, chips = p["q"].strip(), int(p.get("ijn") or 0), p.get("chips") or None
        if self._hit("empty"):
            return h.send_json(200, {"search_metadata": sc.metadata(self.origin, sc.search_id(q, chips, page), q,
                                                                     page), "error": NO_RESULTS})
        start, stop = sc.page_bounds(page, self.results_per_query)
        if start >= stop:
            return h.send_json(200, {"search_metadata": sc.metadata(self.origin, sc.search_id(q, chips, page), q,
                                                                     page), "error": NO_RESULTS})
        base_q, size = _split_size(q)
        on = self._on()
        marker = SERVER_KEY if "key_in_urls" in on else ""
        related = self.related.get(base_q) or sc.related_for(base_q)
        data = sc.search_answer(self.origin, self.base_url, q, base_q, size, chip_name(chips), chips, page, start,
                                stop, self.results_per_query, p, on, related, marker)
        bad = self._hit("malformed")
        if bad:
            data = sc.malform(data, str(bad.get("shape", "images_results_string")))
        trickle = self._hit("trickle_search")
        if trickle:
            return h.trickle(json.dumps(data).encode(), "application/json", float(trickle.get("interval", 1.0)),
                             self._closing)
        h.send_json(200, data)

    def _archived(self, h: _Handler, path: str) -> None:
        sid = path.strip("/").split("/", 1)[-1].removesuffix(".json")
        with self._lock:
            entry = self._archive.get(sid)
        if entry is None:
            return h.send_json(404, {"error": "Couldn't find the search with the given id."})
        p, ready = entry
        q, page = p.get("q", ""), int(p.get("ijn") or 0)
        if time.monotonic() < ready:
            return h.send_json(200, {"search_metadata": sc.metadata(self.origin, sid, q, page, "Processing"),
                                     "search_parameters": {"engine": "google_images", "q": q}})
        self._answer(h, {k: v for k, v in p.items() if k != "async"})

    def _account(self, h: _Handler) -> None:
        with self._lock:
            used, total = self.billed, self.searches_left
        left = max(0, total - used) if total is not None else 1_000_000
        h.send_json(200, {"account_id": "stub-account", "plan_id": "stub", "plan_name": "Offline stub", "plan_monthly_price": 0.0,
                          "searches_per_month": total if total is not None else 1_000_000,
                          "plan_searches_left": left, "extra_credits": 0, "total_searches_left": left,
                          "this_month_usage": used, "last_hour_searches": used,
                          "account_rate_limit_per_hour": 1_000_000})

def _split_size(q: str) -> tuple[str, tuple[int, int] | None]:
    """``"red fox imagesize:640x480"`` → ``("red fox", (640, 480))``."""
    words, size = [], None
    for w in q.split():
        if w.lower().startswith("imagesize:"):
            try:
                size = parse_size(w.split(":", 1)[1])
            except ValueError:
                size = None
        else:
            words.append(w)
    return " ".join(words), size


def serve_forever(port: int = 8765, host: str = "127.0.0.1", **kwargs: Any) -> None:
    """Run a stub in the foreground until interrupted (``python -m workbench stub-serpapi``)."""
    stub = SerpApiStub(host=host, port=port, **kwargs).start()
    print(f"SerpApi stub serving Google Images at {stub.base_url} (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stub.stop()
