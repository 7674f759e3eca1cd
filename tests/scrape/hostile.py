"""A loopback HTTP server that misbehaves on purpose: trickles, stalls, redirects, lies.

Routes map a path to a behaviour; every handler gives up when the server stops, so a
test never leaves a thread behind. Only 127.0.0.1 is ever bound.
"""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.owner.hits.append(self.path)
        route = self.server.owner.routes.get(self.path.split("?")[0])
        try:
            if route is None:
                self._send(404, b"not found", "text/plain")
            else:
                route(self)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: "Hostile"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class Hostile:
    """``with Hostile() as h: h.route("/x", h.trickle(b"..."))``; ``h.url("/x")``."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[_Handler], None]] = {}
        self.hits: list[str] = []
        self.closing = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, path: str, behaviour: Callable[[_Handler], None]) -> str:
        self.routes[path] = behaviour
        return self.url(path)

    # -- behaviours -----------------------------------------------------------------
    def ok(self, body: bytes, ctype: str = "application/octet-stream", status: int = 200,
           headers: dict[str, str] | None = None) -> Callable[[_Handler], None]:
        return lambda h: h._send(status, body, ctype, headers)

    def trickle(self, body: bytes, interval: float = 1.0, ctype: str = "image/jpeg",
                header_trickle: bool = False) -> Callable[[_Handler], None]:
        """One byte every ``interval`` seconds (a declared length that takes forever)."""
        def run(h: _Handler) -> None:
            if header_trickle:
                for ch in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
                    if self.closing.wait(interval):
                        return
                    h.wfile.write(bytes([ch]))
                    h.wfile.flush()
                return
            h.send_response(200)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.flush()
            for i in range(len(body)):
                if self.closing.wait(interval):
                    return
                h.wfile.write(body[i:i + 1])
                h.wfile.flush()
        return run

    def stall(self) -> Callable[[_Handler], None]:
        """Accept the request and never answer."""
        def run(h: _Handler) -> None:
            self.closing.wait(60)
            h.close_connection = True
        return run

    def redirect(self, location: str, status: int = 302) -> Callable[[_Handler], None]:
        return lambda h: h._send(status, b"", "text/plain", {"Location": location})

    def slow_then(self, seconds: float, body: bytes, ctype: str = "application/json") -> Callable[[_Handler], None]:
        def run(h: _Handler) -> None:
            if not self.closing.wait(seconds):
                h._send(200, body, ctype)
        return run

    def close(self) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "Hostile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(result or raised exception, seconds)``."""
    t = time.monotonic()
    try:
        out = fn()
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        out = exc
    return out, time.monotonic() - t
