"""A SerpApi-compatible loopback server for offline work and tests.

``SerpApiStub`` serves ``engine=google_images`` searches in SerpApi's schema
(``search_metadata``, ``search_parameters``, ``suggested_searches``, ``images_results``,
``serpapi_pagination``) over the generated corpus of :mod:`workbench.scrape.corpus`,
and the images themselves, from one stdlib ``ThreadingHTTPServer`` on a free port of
127.0.0.1. Fault switches reproduce what the real service and the web do to a scraper:

=============  ==========================================================================
fault          effect
=============  ==========================================================================
auth           searches answer 401 ``{"error": "Invalid API key..."}``
rate_limit     searches answer 429 (``times`` = how many before it recovers)
server_error   searches answer 500
empty          searches answer 200 with ``{"error": "Google Images hasn't returned any results..."}``
slow           searches wait ``seconds`` (default 2) before answering
html           result at ``FAULT_SLOTS["html"]`` serves an HTML error page as its "image"
truncated      ... serves a JPEG cut in half
huge           ... serves a PNG whose header claims 20000×20000 px (a decompression bomb)
oversize       ... streams more than 20 MB without a Content-Length
svg            ... serves an SVG document
redirect       ... answers 302 to a real image (should be followed and accepted)
duplicate      two results repeat position 1: one with the same URL, one with the same bytes
=============  ==========================================================================

``times`` (optional) limits a fault to its first N hits, then the stub behaves.
The stub never logs request lines (they would hold the API key) and keeps its own
request log in memory with ``api_key`` redacted.
"""
from __future__ import annotations

import hashlib
import json
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, unquote, urlencode, urlsplit

from . import corpus
from .client import PAGE_SIZE, parse_size

#: Every fault switch and what it needs.
FAULTS = ("auth", "rate_limit", "server_error", "empty", "slow", "html", "truncated", "huge", "oversize",
          "svg", "redirect", "duplicate")
SEARCH_FAULTS = ("auth", "rate_limit", "server_error", "empty", "slow")
#: Result positions (1-based, on every page) an image fault replaces.
FAULT_SLOTS = {"html": 3, "truncated": 5, "huge": 7, "oversize": 9, "svg": 11, "redirect": 13}
#: Positions that become duplicates of position 1 under the ``duplicate`` fault.
DUPLICATE_URL_SLOT, DUPLICATE_CONTENT_SLOT = 15, 17
NO_RESULTS = "Google Images hasn't returned any results for this query."
INVALID_KEY = "Invalid API key. Your API key should be here: https://serpapi.com/manage-api-key"


def _huge_png(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny PNG whose header claims ``width × height`` (Pillow refuses it as a bomb)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


_SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
        b'<circle cx="32" cy="32" r="20" fill="red"/></svg>')
_HTML = (b"<!doctype html><html><head><title>403 Forbidden</title></head><body><h1>Forbidden</h1>"
         b"<p>Hotlinking is not allowed.</p></body></html>")


def _chip_token(query: str, name: str) -> str:
    return hashlib.sha1(f"{query}|{name}".encode()).hexdigest()[:12]


def chips_string(query: str, name: str) -> str:
    """SerpApi-style ``chips`` value for a suggested search (``q:...,online_chips:...``)."""
    return f"q:{quote_plus(query)},online_chips:{quote_plus(name)}:{_chip_token(query, name)}"


def chip_name(chips: str | None) -> str | None:
    """The chip style named by a ``chips`` string, or ``None``."""
    if not chips or "online_chips:" not in chips:
        return None
    part = chips.split("online_chips:", 1)[1].split(":", 1)[0]
    name = unquote(part.replace("+", " "))
    return name if name in corpus.CHIP_STYLES else None


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

    # -- helpers ---------------------------------------------------------------
    def send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, obj: Any) -> None:
        self.send(status, json.dumps(obj).encode(), "application/json; charset=utf-8")


class SerpApiStub:
    """A loopback SerpApi for Google Images. Use as a context manager::

        with SerpApiStub() as stub:
            client = SerpApiClient(base_url=stub.base_url)

    Args:
        results_per_query: images each query has (default 150: a full page and half another).
        image_latency: seconds every image response waits (the benchmark's 50 ms).
        search_latency: seconds every search waits.
        faults: ``{name: True | times}`` switched on from the start (see :data:`FAULTS`).
        port: 0 picks a free port.
    """

    def __init__(self, *, results_per_query: int = 150, image_latency: float = 0.0, search_latency: float = 0.0,
                 faults: dict[str, Any] | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        if results_per_query < 1:
            raise ValueError(f"results_per_query: {results_per_query!r} must be >= 1")
        self.results_per_query = int(results_per_query)
        self.image_latency = float(image_latency)
        self.search_latency = float(search_latency)
        self.host, self.port = host, int(port)
        self._faults: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        #: one dict per request: ``{"path", "kind", "params"}`` (``api_key`` redacted)
        self.requests: list[dict[str, Any]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._cache: dict[tuple, tuple[bytes, str]] = {}
        for name, v in (faults or {}).items():
            self.set_fault(name, times=None if v is True else int(v))

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> "SerpApiStub":
        """Bind the port and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), _Handler)
        self._server.stub = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=f"serpapi-stub-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
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
        """Switch a fault on (``times``: only for its first N hits; ``seconds`` for ``slow``)."""
        if name not in FAULTS:
            raise ValueError(f"fault: {name!r} is not a fault switch; allowed: {', '.join(FAULTS)}")
        with self._lock:
            self._faults[name] = {"left": times, **options}

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

    def _on(self, name: str) -> bool:
        with self._lock:
            f = self._faults.get(name)
            return f is not None and (f["left"] is None or f["left"] > 0)

    def count(self, kind: str = "search") -> int:
        """How many requests of ``kind`` (``search``, ``image``, ``thumb``, ``fault``, ...) arrived."""
        with self._lock:
            return sum(1 for r in self.requests if r["kind"] == kind)

    # -- routing ---------------------------------------------------------------------
    def _dispatch(self, h: _Handler) -> None:
        parts = urlsplit(h.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        path = parts.path
        kind = path.strip("/").split("/", 1)[0] or "root"
        if kind == "search.json":
            kind = "search"
        shown = {k: ("***" if k == "api_key" else v) for k, v in params.items()}
        with self._lock:
            self.requests.append({"path": path, "kind": kind, "params": shown})
        if kind == "search":
            self._search(h, params)
        elif kind in ("img", "thumb"):
            self._image(h, path, thumb=kind == "thumb")
        elif kind == "fault":
            self._fault_image(h, path)
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
        if self._hit("auth"):
            return h.send_json(401, {"error": INVALID_KEY})
        if self._hit("rate_limit"):
            return h.send_json(429, {"error": "Your account has run out of searches."})
        if self._hit("server_error"):
            return h.send_json(500, {"error": "Internal server error; please retry."})
        if p.get("engine") != "google_images":
            return h.send_json(400, {"error": f"Unsupported `{p.get('engine')}` search engine."})
        q = (p.get("q") or "").strip()
        if not q:
            return h.send_json(400, {"error": "Missing query `q` parameter."})
        try:
            page = int(p.get("ijn") or 0)
        except ValueError:
            return h.send_json(400, {"error": f"Invalid `ijn` parameter: {p.get('ijn')}"})
        if self._hit("empty"):
            return h.send_json(200, {"search_metadata": {"status": "Success"}, "error": NO_RESULTS})
        chips = p.get("chips") or None
        style = chip_name(chips)
        if chips and style is None:
            return h.send_json(400, {"error": "Invalid `chips` parameter."})
        start, stop = page * PAGE_SIZE, min((page + 1) * PAGE_SIZE, self.results_per_query)
        if start >= stop:
            return h.send_json(200, {"search_metadata": {"status": "Success"}, "error": NO_RESULTS})
        base_q, size = _split_size(q)
        h.send_json(200, self._response(q, base_q, size, style, chips, page, start, stop, p))

    def _response(self, q: str, base_q: str, size: tuple[int, int] | None, style: str | None,
                  chips: str | None, page: int, start: int, stop: int, p: dict[str, str]) -> dict[str, Any]:
        sid = hashlib.sha1(f"{q}|{chips}|{page}".encode()).hexdigest()[:24]
        qq = quote(base_q, safe="")
        ss = quote(style or "-", safe="")
        sz = f"{size[0]}x{size[1]}" if size else "auto"
        results = []
        for i in range(start, stop):
            pos = i - start + 1
            fmt = corpus.image_format(i)
            ext = "png" if fmt.startswith("png") else "jpg"
            w, h = size or corpus.default_size(base_q, i)
            original = f"{self.origin}/img/{qq}/{ss}/{sz}/{i}.{ext}"
            if self._on("duplicate") and pos in (DUPLICATE_URL_SLOT, DUPLICATE_CONTENT_SLOT):
                j = start  # position 1's image
                fmt0 = corpus.image_format(j)
                ext0 = "png" if fmt0.startswith("png") else "jpg"
                original = f"{self.origin}/img/{qq}/{ss}/{sz}/{j}.{ext0}"
                if pos == DUPLICATE_CONTENT_SLOT:
                    original += "?copy=1"  # same bytes, another URL
                w, h = size or corpus.default_size(base_q, j)
            for fault, slot in FAULT_SLOTS.items():
                if pos == slot and self._on(fault):
                    if fault == "redirect":
                        original = f"{self.origin}/redirect/img/{qq}/{ss}/{sz}/{i}.{ext}"
                    else:
                        original = f"{self.origin}/fault/{fault}/{qq}/{i}.jpg"
            results.append({
                "position": pos,
                "thumbnail": f"{self.origin}/thumb/{qq}/{ss}/{sz}/{i}.jpg",
                "related_content_id": hashlib.sha1(f"{q}|{i}".encode()).hexdigest()[:16],
                "serpapi_related_content_link": f"{self.origin}/search.json?engine=google_images_related_content"
                                                f"&related_content_id={i}",
                "source": f"stub-source-{i % 7}.example",
                "source_logo": f"{self.origin}/thumb/logo/{i % 7}.png",
                "title": f"{base_q}{' (' + style + ')' if style else ''} #{i}",
                "link": f"{self.origin}/page/{qq}/{i}",
                "original": original,
                "original_width": w,
                "original_height": h,
                "is_product": False,
            })
        suggested = [{
            "name": name,
            "link": f"https://www.google.com/search?q={quote_plus(q)}&tbm=isch&chips={quote_plus(chips_string(base_q, name))}",
            "chips": chips_string(base_q, name),
            "serpapi_link": f"{self.base_url}?" + urlencode({"engine": "google_images", "q": q,
                                                             "chips": chips_string(base_q, name)}),
            "thumbnail": f"{self.origin}/thumb/{qq}/{quote(name, safe='')}/auto/0.jpg",
        } for name in corpus.CHIP_STYLES]
        params_echo = {"engine": "google_images", "q": q, "ijn": str(page)}
        for k in ("google_domain", "gl", "hl", "chips", "safe", "imgsz", "tbs", "image_type", "image_color",
                  "licenses", "no_cache"):
            if p.get(k):
                params_echo[k] = p[k]
        nxt = {k: v for k, v in params_echo.items()}
        nxt["ijn"] = str(page + 1)
        pagination = {"current": page}
        if stop < self.results_per_query:
            pagination["next"] = f"{self.base_url}?" + urlencode(nxt)
        now = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        return {
            "search_metadata": {
                "id": sid, "status": "Success", "json_endpoint": f"{self.origin}/searches/{sid}.json",
                "created_at": now, "processed_at": now,
                "google_images_url": f"https://www.google.com/search?q={quote_plus(q)}&tbm=isch&ijn={page}",
                "raw_html_file": f"{self.origin}/searches/{sid}.html", "total_time_taken": 0.01,
            },
            "search_parameters": params_echo,
            "suggested_searches": suggested if page == 0 else [],
            "images_results": results,
            "serpapi_pagination": pagination,
        }

    def _image_bytes(self, base_q: str, style: str | None, size: tuple[int, int] | None, i: int) -> tuple[bytes, str]:
        key = (base_q, style, size, i)
        with self._lock:
            hit = self._cache.get(key)
        if hit is None:
            hit = corpus.image_bytes(base_q, i, style, size)
            with self._lock:
                if len(self._cache) > 4096:
                    self._cache.clear()
                self._cache[key] = hit
        return hit

    def _image(self, h: _Handler, path: str, thumb: bool) -> None:
        if self.image_latency:
            time.sleep(self.image_latency)
        parts = path.strip("/").split("/")
        try:
            _, qq, ss, sz, name = parts
            i = int(name.split(".")[0])
            base_q = unquote(qq)
            style = None if unquote(ss) == "-" else unquote(ss)
            size = None if sz == "auto" else parse_size(sz)
        except (ValueError, TypeError):
            return h.send(404, b"not found", "text/plain")
        if thumb:
            img = corpus.render(base_q, i, style, (48, 48))
            body, ctype = corpus.encode(img, "jpeg")
        else:
            body, ctype = self._image_bytes(base_q, style, size, i)
        h.send(200, body, ctype, {"Cache-Control": "max-age=86400"})

    def _fault_image(self, h: _Handler, path: str) -> None:
        parts = path.strip("/").split("/")
        fault = parts[1] if len(parts) > 1 else ""
        if self.image_latency:
            time.sleep(self.image_latency)
        if fault == "html":
            return h.send(200, _HTML, "image/jpeg")  # lies about its type, as hotlink guards do
        if fault == "svg":
            return h.send(200, _SVG, "image/svg+xml")
        if fault == "huge":
            return h.send(200, _huge_png(), "image/png")
        if fault == "truncated":
            body, _ = corpus.image_bytes(unquote(parts[2]) if len(parts) > 2 else "x", 0, None, (128, 128))
            return h.send(200, body[: len(body) // 2], "image/jpeg")
        if fault == "oversize":
            # no Content-Length: the client must cap the stream itself
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Connection", "close")
            h.end_headers()
            h.close_connection = True
            chunk = b"\xff" * 65536
            for _ in range(21 * 1024 * 1024 // len(chunk) + 16):
                h.wfile.write(chunk)
            return
        h.send(404, b"not found", "text/plain")


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
