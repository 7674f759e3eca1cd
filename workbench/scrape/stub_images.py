"""The stub's image routes: corpus images, thumbnails, planted near-duplicates, hostile bodies."""
from __future__ import annotations

import hashlib
import threading
import time
from typing import Any
from urllib.parse import unquote

from . import corpus
from . import stub_content as sc
from .client import parse_size


class ImageRoutes:
    """Mixin of :class:`~workbench.scrape.stub.SerpApiStub`: serves ``/img``, ``/thumb``, ``/near``, ``/fault``."""

    image_latency: float
    _lock: threading.Lock
    _cache: dict[tuple, tuple[bytes, str]]
    _closing: threading.Event

    def _opt(self, name: str, key: str, default: Any) -> Any:  # provided by the stub
        raise NotImplementedError

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

    def serve_image(self, h: Any, path: str, kind: str) -> None:
        if self.image_latency:
            time.sleep(self.image_latency)
        parts = path.strip("/").split("/")
        try:
            if kind == "near":
                _, nkind, qq, ss, sz, _pos, name = parts
            else:
                _, qq, ss, sz, name = parts
            i = int(name.split(".")[0])
            base_q = unquote(qq)
            style = None if unquote(ss) == "-" else unquote(ss)
            size = None if sz == "auto" else parse_size(sz)
        except (ValueError, TypeError):
            return h.send(404, b"not found", "text/plain")
        if kind == "thumb":
            body, ctype = corpus.encode(corpus.render(base_q, i, style, (48, 48)), "jpeg")
        elif kind == "near":
            if nkind == "stock":
                src = self._image_bytes(sc.STOCK_QUERY, None, None, 0)[0]
                nkind = sc.NEAR_DUP_KINDS[int(hashlib.sha1(base_q.encode()).hexdigest(), 16) % 3]
            else:
                src = self._image_bytes(base_q, style, size, i)[0]
            body, ctype = sc.near_copy(src, nkind, f"{path}"), "image/jpeg"
        else:
            body, ctype = self._image_bytes(base_q, style, size, i)
        h.send(200, body, ctype, {"Cache-Control": "max-age=86400"})

    def serve_fault_image(self, h: Any, path: str) -> None:
        parts = path.strip("/").split("/")
        fault = parts[1] if len(parts) > 1 else ""
        if self.image_latency:
            time.sleep(self.image_latency)
        if fault == "html":
            return h.send(200, sc.HTML, "image/jpeg")  # lies about its type, as hotlink guards do
        if fault == "svg":
            return h.send(200, sc.SVG, "image/svg+xml")
        if fault == "huge":
            return h.send(200, sc.huge_png(), "image/png")
        if fault == "megapixel":
            return h.send(200, sc.megapixel_png(), "image/png")
        if fault == "broken":
            return h.send(404, b"gone", "text/plain")
        if fault == "truncated":
            body, _ = corpus.image_bytes(unquote(parts[2]) if len(parts) > 2 else "x", 0, None, (128, 128))
            return h.send(200, body[: len(body) // 2], "image/jpeg")
        if fault == "trickle":
            body, _ = corpus.image_bytes("trickle", 0, None, (64, 64))
            return h.trickle(body, "image/jpeg", float(self._opt("trickle", "interval", 1.0)), self._closing)
        if fault == "stall":
            self._closing.wait(120)
            h.close_connection = True
            return
        if fault == "private_redirect":
            target = self._opt("private_redirect", "target", "http://169.254.169.254/latest/meta-data/")
            return h.send(302, b"", "text/plain", {"Location": target})
        if fault == "image_rate_limit":
            ra = str(self._opt("image_rate_limit", "retry_after", 3600))
            return h.send(429, b"slow down", "text/plain", {"Retry-After": ra})
        if fault == "oversize":
            # no Content-Length: the client must cap the stream itself
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Connection", "close")
            h.end_headers()
            h.close_connection = True
            chunk = b"\xff" * 65536
            for _ in range(21 * 1024 * 1024 // len(chunk) + 16):
                if self._closing.is_set():
                    break
                h.wfile.write(chunk)
            return
        h.send(404, b"not found", "text/plain")
