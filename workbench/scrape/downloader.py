"""Concurrent, verifying image downloader.

Each candidate URL is fetched by a thread pool (streaming, connect/read timeouts, a
byte cap, a browser-like User-Agent, urllib3 ``Retry`` for 429/5xx), then *decoded*
with Pillow — the Content-Type header and the file extension are never trusted — so
HTML error pages, SVG, truncated files and decompression bombs are rejected with a
reason. Accepted images are converted to RGB (palette, alpha, CMYK, 16-bit), optionally
resized, deduplicated by content hash across the whole dataset and by URL, and written
as ``ROOT/<folder>/<sha256[:16]>.jpg`` plus one manifest line. URLs already in the
manifest are not fetched again, so a rerun resumes.
"""
from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import requests
from PIL import Image, ImageOps

from .client import ImageResult, make_session
from .dataset import IMAGE_EXT, Manifest

#: Sent with every image request: some hosts refuse obvious bots.
USER_AGENT = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/124.0 Safari/537.36")
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
#: Formats Pillow may decode here; others (EPS, PSD, ICO …) are refused outright.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO")
#: Every reason a candidate can be rejected for.
REJECT_REASONS = ("duplicate_url", "duplicate_content", "known_bad", "timeout", "connection_error",
                  "http_error", "too_large", "not_an_image", "svg", "truncated", "decompression_bomb",
                  "too_small", "write_error", "error")


class Rejected(Exception):
    """A candidate that will not enter the dataset, and why."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _looks_like(data: bytes) -> str:
    head = data[:2048].lstrip().lower()
    if head.startswith(b"<?xml") and b"<svg" in head or head.startswith(b"<svg"):
        return "svg"
    if head.startswith((b"<!doctype", b"<html", b"<head", b"<body")) or b"<html" in head:
        return "html"
    return ""


def decode_image(data: bytes, *, min_side: int = 16) -> Image.Image:
    """Decode and fully load ``data`` as an RGB image, or raise :class:`Rejected`.

    Alpha and palette transparency are flattened onto white; EXIF orientation applied.
    """
    kind = _looks_like(data)
    if kind == "svg":
        raise Rejected("svg", "SVG document (vector, not decoded)")
    try:
        im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise Rejected("decompression_bomb", str(exc)[:120]) from None
    except Exception as exc:  # UnidentifiedImageError, SyntaxError from broken headers, ...
        what = "HTML page" if kind == "html" else f"{len(data)} bytes Pillow cannot identify"
        raise Rejected("not_an_image", what if kind == "html" else f"{what} ({type(exc).__name__})") from None
    w, h = im.size
    # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that; a warning filter is
    # process-global (not thread-safe), so compare the size directly instead.
    limit = Image.MAX_IMAGE_PIXELS
    if limit and w * h > limit:
        raise Rejected("decompression_bomb", f"{w}x{h} px exceeds Pillow's limit of {limit} px")
    try:
        im.load()
    except Image.DecompressionBombError as exc:
        raise Rejected("decompression_bomb", str(exc)[:120]) from None
    except (OSError, SyntaxError, ValueError) as exc:
        reason = "truncated" if "truncat" in str(exc).lower() or "broken data" in str(exc).lower() else "not_an_image"
        raise Rejected(reason, f"{im.format} {w}x{h}: {str(exc)[:100]}") from None
    if min(w, h) < min_side:
        raise Rejected("too_small", f"{w}x{h} px (min side {min_side})")
    try:
        im = ImageOps.exif_transpose(im) or im
    except Exception:  # a broken EXIF block is no reason to lose the picture
        pass
    return to_rgb(im)


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB version of any Pillow image; transparency composited onto white."""
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        im = im.convert("I").point(lambda v: v / 256).convert("L") if im.mode != "F" else im.convert("L")
    return im.convert("RGB")


def resize_image(im: Image.Image, resize: int | tuple[int, int] | None) -> Image.Image:
    """``int``: longest side at most ``resize`` (aspect kept); ``(w, h)``: exactly that size."""
    if resize is None:
        return im
    if isinstance(resize, int):
        if max(im.size) > resize:
            im = im.copy()
            im.thumbnail((resize, resize), Image.LANCZOS)
        return im
    return im.resize((int(resize[0]), int(resize[1])), Image.LANCZOS)


@dataclass
class LabelStats:
    """Per-label progress of one build."""

    candidates: int = 0
    accepted: int = 0     # new images written this run
    existing: int = 0     # already in the dataset (resume)
    rejected: int = 0
    skipped: int = 0      # not needed: the label reached its limit
    done: int = 0

    @property
    def total(self) -> int:
        """Images of this label in the dataset now."""
        return self.accepted + self.existing


@dataclass
class DownloadReport:
    """What a :meth:`Downloader.run` did."""

    stats: dict[str, LabelStats] = field(default_factory=dict)
    rejects: Counter = field(default_factory=Counter)
    reject_rows: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0
    stopped: bool = False     # the stop event was set: some candidates were never tried


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Downloader:
    """Download candidates into a dataset folder (see module docstring).

    Args:
        root: dataset folder.
        workers: threads fetching at once.
        timeout: ``(connect, read)`` seconds.
        max_bytes: byte cap per image (``Content-Length`` checked first, then the stream).
        resize: ``None``, longest side, or exact ``(w, h)``.
        limit: at most this many images per label (counting ones already present).
        retries, backoff: urllib3 ``Retry`` for 429/5xx/timeouts per image.
        min_side: smaller images are rejected (tracking pixels, icons).
        url_key: maps a URL to the key stored in the manifest and used to dedupe and
            resume (the loopback stub's port changes between runs, so its origin is dropped).
        progress: ``progress(label, stats)`` after every candidate, from worker threads.
        stop: when set, candidates not yet started are dropped (what is written stays valid).
    """

    def __init__(self, root: str | os.PathLike, *, workers: int = 8, timeout: tuple[float, float] = (5.0, 15.0),
                 max_bytes: int = DEFAULT_MAX_BYTES, resize: int | tuple[int, int] | None = None,
                 limit: int | None = None, retries: int = 2, backoff: float = 0.3, min_side: int = 16,
                 jpeg_quality: int = 92, url_key: Callable[[str], str] | None = None,
                 progress: Callable[[str, LabelStats], None] | None = None,
                 stop: threading.Event | None = None) -> None:
        if int(workers) < 1:
            raise ValueError(f"workers: {workers!r} must be >= 1")
        if limit is not None and int(limit) < 1:
            raise ValueError(f"limit: {limit!r} must be >= 1 (or None for no limit)")
        self.root = Path(root)
        self.workers = int(workers)
        self.timeout = timeout
        self.max_bytes = int(max_bytes)
        self.resize = resize
        self.limit = None if limit is None else int(limit)
        self.retries, self.backoff = retries, backoff
        self.min_side = min_side
        self.jpeg_quality = jpeg_quality
        self.progress = progress
        self.stop = stop
        self.url_key = url_key or (lambda u: u)
        self.manifest = Manifest(self.root)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = self.manifest.lock
        # Per-label downloads in flight: a fetch starts only while accepted + in flight
        # < limit, so a limited build fetches (almost) nothing it will throw away.
        self._cond = threading.Condition(self._lock)
        self._inflight: Counter = Counter()

    # -- http -----------------------------------------------------------------
    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = make_session(retries=self.retries, backoff=self.backoff, pool=2)
            s.headers.update({"User-Agent": USER_AGENT, "Accept": "image/avif,image/webp,image/*,*/*;q=0.8"})
            self._local.session = s
            with self._lock:
                self._sessions.append(s)
        return s

    def fetch(self, url: str) -> bytes:
        """GET ``url`` (streaming, capped); raise :class:`Rejected` on any failure."""
        try:
            with self._session().get(url, stream=True, timeout=self.timeout) as r:
                if r.status_code != 200:
                    raise Rejected("http_error", f"HTTP {r.status_code}")
                length = r.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > self.max_bytes:
                    raise Rejected("too_large", f"Content-Length {int(length)} > {self.max_bytes} bytes")
                buf = bytearray()
                for chunk in r.iter_content(chunk_size=65536):
                    buf += chunk
                    if len(buf) > self.max_bytes:
                        raise Rejected("too_large", f"more than {self.max_bytes} bytes")
                return bytes(buf)
        except Rejected:
            raise
        except requests.Timeout:
            raise Rejected("timeout", f"no answer within {self.timeout}s") from None
        except requests.ConnectionError as exc:
            reason = "timeout" if "timed out" in str(exc).lower() else "connection_error"
            raise Rejected(reason, type(exc).__name__) from None
        except requests.RequestException as exc:
            raise Rejected("http_error", type(exc).__name__) from None

    # -- one candidate ---------------------------------------------------------------
    def _reject(self, report: DownloadReport, item: ImageResult, reason: str, detail: str = "") -> None:
        row = {"label": item.label, "query": item.query, "url": self.url_key(item.original), "reason": reason,
               "detail": detail, "time": _now()}
        with self._lock:
            report.rejects[reason] += 1
            report.reject_rows.append(row)
            report.stats[item.label].rejected += 1
            self.manifest.reject(row)

    def _limit_reached(self, label: str) -> bool:
        return self.limit is not None and self.manifest.counts[label] >= self.limit

    def _one(self, item: ImageResult, folder: str, report: DownloadReport) -> None:
        st = report.stats[item.label]
        reserved = False
        if self.stop is not None and self.stop.is_set():
            return  # not counted as done: it was never tried
        try:
            with self._cond:
                while self.limit is not None:
                    if self.manifest.counts[item.label] + self._inflight[item.label] < self.limit:
                        break
                    if self._inflight[item.label] == 0:
                        st.skipped += 1
                        return
                    self._cond.wait()  # an in-flight fetch may still fail and free a slot
                self._inflight[item.label] += 1
                reserved = True
            data = self.fetch(item.original)
            im = decode_image(data, min_side=self.min_side)
            sha = hashlib.sha256(data).hexdigest()
            with self._lock:
                dup = self.manifest.hashes.get(sha)
                if dup is None and self._limit_reached(item.label):
                    st.skipped += 1
                    return
                if dup is None:
                    rel = f"{folder}/{sha[:16]}{IMAGE_EXT}"
                    row = {"label": item.label, "folder": folder, "path": rel, "query": item.query,
                           "chips": item.chips, "url": self.url_key(item.original), "source_page": self.url_key(item.link),
                           "source": item.source, "title": item.title, "page": item.page,
                           "position": item.position, "sha256": sha, "bytes": len(data)}
                    self.manifest.hashes[sha] = row  # claim before writing, so a twin waits for nothing
                    self.manifest.counts[item.label] += 1
            if dup is not None:
                raise Rejected("duplicate_content", f"same bytes as {dup['path']}")
            try:
                out = resize_image(im, self.resize)
                row.update(width=out.size[0], height=out.size[1], original_width=im.size[0],
                           original_height=im.size[1], fetched_at=_now())
                path = self.root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
                out.save(tmp, "JPEG", quality=self.jpeg_quality)
                os.replace(tmp, path)  # never a half-written image under the final name
            except OSError as exc:
                with self._lock:
                    self.manifest.hashes.pop(sha, None)
                    self.manifest.counts[item.label] -= 1
                raise Rejected("write_error", str(exc)[:120]) from None
            with self._lock:
                self.manifest.add(row)
                self.manifest.urls[self.url_key(item.original)] = item.label
                st.accepted += 1
        except Rejected as rj:
            self._reject(report, item, rj.reason, rj.detail)
        except Exception as exc:  # one odd file must not end the whole build; keep its story
            self._reject(report, item, "error", f"{type(exc).__name__}: {str(exc)[:120]}")
        finally:
            with self._cond:
                st.done += 1
                if reserved:
                    self._inflight[item.label] -= 1
                    self._cond.notify_all()
            if self.progress is not None:
                try:
                    self.progress(item.label, st)
                except Exception:  # a broken progress display must not stop the download
                    pass

    # -- many ---------------------------------------------------------------------------
    def run(self, items: Sequence[ImageResult], folders: Mapping[str, str]) -> DownloadReport:
        """Download ``items`` into their label folders; returns counts and rejects.

        Candidates already in the manifest (same URL) count as ``existing`` and are not
        fetched; a URL seen twice is a ``duplicate_url`` reject; URLs rejected for good
        before (HTML, SVG, bombs …) are ``known_bad`` and not fetched again.
        """
        t0 = time.perf_counter()
        report = DownloadReport()
        for label in folders:
            report.stats.setdefault(label, LabelStats(existing=self.manifest.counts[label]))
        todo: list[ImageResult] = []
        seen: set[str] = set()
        for item in items:
            st = report.stats.setdefault(item.label, LabelStats(existing=self.manifest.counts[item.label]))
            st.candidates += 1
            key = self.url_key(item.original)
            owner = self.manifest.urls.get(key)
            if owner == item.label:
                st.done += 1  # already downloaded by an earlier run: nothing to do
                continue
            if owner is not None or key in seen:
                where = f"already stored under label {owner!r}" if owner else "URL listed earlier in this build"
                self._reject(report, item, "duplicate_url", where)
                st.done += 1
                continue
            seen.add(key)
            if key in self.manifest.bad_urls:
                self._reject(report, item, "known_bad", "rejected for good by an earlier build")
                st.done += 1
                continue
            todo.append(item)
        if self.progress is not None:
            for label, st in report.stats.items():
                self.progress(label, st)
        todo = _round_robin(todo)
        try:
            if self.workers == 1:
                for item in todo:
                    self._one(item, folders[item.label], report)
            else:
                pool = ThreadPoolExecutor(self.workers, thread_name_prefix="scrape-dl")
                try:
                    for f in [pool.submit(self._one, it, folders[it.label], report) for it in todo]:
                        f.result()
                finally:  # on Ctrl-C / an error, drop what has not started instead of finishing it
                    pool.shutdown(wait=True, cancel_futures=True)
        finally:
            for s in self._sessions:
                s.close()
            self._sessions.clear()
        report.elapsed_s = time.perf_counter() - t0
        report.stopped = bool(self.stop is not None and self.stop.is_set())
        return report


def _round_robin(items: Iterable[ImageResult]) -> list[ImageResult]:
    """Interleave labels so every label's progress bar moves from the start."""
    groups: dict[str, list[ImageResult]] = {}
    for it in items:
        groups.setdefault(it.label, []).append(it)
    out: list[ImageResult] = []
    queues = list(groups.values())
    i = 0
    while any(queues):
        q = queues[i % len(queues)]
        if q:
            out.append(q.pop(0))
        i += 1
    return out
