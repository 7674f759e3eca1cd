"""Concurrent, verifying, bounded image downloader.

Each candidate URL is fetched by a thread pool through :class:`~workbench.scrape.net.Fetcher`
(a total deadline per image, Stop/Ctrl-C cut in-flight fetches at once, a byte cap,
``Retry-After`` capped, the address guard on every hop), then *decoded* within a pixel and
memory budget (:mod:`~workbench.scrape.decode`) — the Content-Type header and the file
extension are never trusted — so HTML error pages, SVG, truncated files, bombs and
81-megapixel PNGs are rejected with a reason. When an original fails for a reason a smaller
copy can fix (HTTP error, timeout, HTML page, truncation, too many pixels) its ``thumbnail``
is tried, and the row says ``"from_thumbnail": true``. Accepted images are converted to RGB,
optionally resized, deduplicated by content hash across the dataset and by URL, and written
as ``ROOT/<folder>/<sha256[:16]>.jpg`` plus one manifest line (with its perceptual hash for
the near-duplicate pass). URLs already in the manifest are not fetched again, so a rerun
resumes.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .client import ImageResult
from .dataset import IMAGE_EXT, Manifest, write_atomic
from .decode import (DEFAULT_DECODE_BUDGET, DEFAULT_MAX_PIXELS, ByteBudget, Rejected, decode_image,  # noqa: F401
                     resize_image)
from .errors import clean_url
from .net import RETRY_AFTER_CAP, AddressGuard, FetchError, Fetcher
from .stub import running_origins

#: Sent with every image request: some hosts refuse obvious bots.
USER_AGENT = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/124.0 Safari/537.36")
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
#: Every reason a candidate can be rejected for.
REJECT_REASONS = ("duplicate_url", "duplicate_content", "near_duplicate", "known_bad", "bad_url", "blocked_url",
                  "blocked_address", "product", "timeout", "connection_error", "http_error", "too_many_redirects",
                  "too_large", "not_an_image", "svg", "truncated", "decompression_bomb", "too_many_pixels",
                  "too_small", "write_error", "error")
#: Failures of an original that its (smaller) thumbnail can stand in for.
FALLBACK_REASONS = frozenset({"http_error", "timeout", "connection_error", "not_an_image", "truncated",
                              "too_many_pixels", "too_large"})


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
    untried: list[ImageResult] = field(default_factory=list)  # skipped for the limit, or cut by Stop
    elapsed_s: float = 0.0
    stopped: bool = False     # Stop was set: some candidates were never tried or were abandoned
    from_thumbnail: int = 0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Downloader:
    """Download candidates into a dataset folder (see module docstring).

    Args:
        root: dataset folder.
        workers: threads fetching at once.
        timeout: ``(connect, read)`` seconds per socket operation.
        deadline: total seconds one image may take (retries, redirects and waits included).
        max_bytes: byte cap per image (``Content-Length`` checked first, then the stream).
        resize: ``None``, longest side, or exact ``(w, h)``.
        limit: at most this many images per label (counting ones already present).
        retries, backoff: retries for 429/5xx/connection errors per image.
        retry_after_cap: the longest wait a server's ``Retry-After`` may impose.
        min_side: smaller images are rejected (tracking pixels, icons).
        max_pixels, decode_budget: see :mod:`~workbench.scrape.decode`.
        guard: the SSRF :class:`~workbench.scrape.net.AddressGuard` (default: refuse private
            addresses, allow nothing extra).
        thumbnail_fallback: try a result's thumbnail when its original fails.
        skip_products: reject results SerpApi marks ``is_product``.
        url_key: maps a URL to the key stored in the manifest and used to dedupe and
            resume (the loopback stub's port changes between runs, so its origin is dropped).
        progress: ``progress(label, stats)`` after every candidate, from worker threads.
        stop: when set, nothing new starts and fetches in flight are abandoned within a
            fraction of a second; what is written stays valid.
    """

    def __init__(self, root: str | Path, *, workers: int = 8, timeout: tuple[float, float] = (5.0, 15.0),
                 deadline: float = 30.0, max_bytes: int = DEFAULT_MAX_BYTES,
                 resize: int | tuple[int, int] | None = None, limit: int | None = None, retries: int = 2,
                 backoff: float = 0.3, retry_after_cap: float = RETRY_AFTER_CAP, min_side: int = 16,
                 jpeg_quality: int = 92, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 decode_budget: int = DEFAULT_DECODE_BUDGET, guard: AddressGuard | None = None,
                 thumbnail_fallback: bool = True, skip_products: bool = False,
                 url_key: Callable[[str], str] | None = None,
                 progress: Callable[[str, LabelStats], None] | None = None,
                 stop: threading.Event | None = None) -> None:
        if int(workers) < 1:
            raise ValueError(f"workers: {workers!r} must be >= 1")
        if limit is not None and int(limit) < 1:
            raise ValueError(f"limit: {limit!r} must be >= 1 (or None for no limit)")
        self.root = Path(root)
        self.workers = int(workers)
        self.resize = resize
        self.limit = None if limit is None else int(limit)
        self.min_side, self.jpeg_quality, self.max_pixels = min_side, jpeg_quality, max_pixels
        self.thumbnail_fallback, self.skip_products = thumbnail_fallback, skip_products
        self.progress = progress
        self.stop = stop
        self.url_key = url_key or (lambda u: u)
        self.budget = ByteBudget(decode_budget)
        self.fetcher = Fetcher(deadline=deadline, timeout=timeout, max_bytes=max_bytes, retries=retries,
                               backoff=backoff, retry_after_cap=retry_after_cap,
                               guard=guard if guard is not None else AddressGuard(allow=running_origins()),
                               stop=stop,
                               pool=self.workers, headers={"User-Agent": USER_AGENT,
                                                           "Accept": "image/avif,image/webp,image/*,*/*;q=0.8"})
        self.manifest = Manifest(self.root)
        self._lock = self.manifest.lock
        # Per-label downloads in flight: a fetch starts only while accepted + in flight
        # < limit, so a limited build fetches (almost) nothing it will throw away.
        self._cond = threading.Condition(self._lock)
        self._inflight: Counter = Counter()

    @property
    def stopping(self) -> bool:
        return self.fetcher.stopping

    def key(self, url: str) -> str:
        """The manifest key of a URL (keys cleaned of ``api_key``, stub origin dropped)."""
        return self.url_key(clean_url(url))

    # -- fetching + decoding ------------------------------------------------------------
    def _target(self) -> int | None:
        if isinstance(self.resize, int):
            return self.resize
        return max(self.resize) if self.resize else None

    def _get_image(self, url: str) -> tuple[Any, bytes, dict[str, Any]]:
        """Fetch and decode one URL; raises :class:`Rejected` (``stopped`` when cut by Stop)."""
        if not url or not url.startswith(("http://", "https://")):
            raise Rejected("bad_url", "no original URL" if not url else f"not an http(s) URL: {url[:60]!r}")
        try:
            resp = self.fetcher.get(url)
        except FetchError as exc:
            failure = exc
        else:
            failure = None
        if failure is not None:
            detail = failure.detail
            if failure.retry_after_capped:
                detail += f" (server asked Retry-After {failure.retry_after_capped:g}s; waited at most " \
                          f"{self.fetcher.retry_after_cap:g}s)"
            raise Rejected(failure.reason, detail)
        im = decode_image(resp.body, min_side=self.min_side, target=self._target(), max_pixels=self.max_pixels,
                          budget=self.budget, stopped=lambda: self.stopping)
        info = {"redirects": len(resp.redirects)}
        if resp.retry_after_capped:
            info["retry_after_capped_s"] = resp.retry_after_capped
        return im, resp.body, info

    def _fetch(self, item: ImageResult) -> tuple[Any, bytes, dict[str, Any]]:
        """The original, or its thumbnail when the original fails for a fixable reason."""
        try:
            return self._get_image(item.original)
        except Rejected as exc:
            first = exc
        if (not self.thumbnail_fallback or first.reason not in FALLBACK_REASONS or self.stopping
                or not item.thumbnail.startswith(("http://", "https://"))):
            raise first
        try:
            im, data, info = self._get_image(item.thumbnail)
        except Rejected:
            raise first from None
        info.update(from_thumbnail=True, original_error=f"{first.reason}: {first.detail}"[:160])
        return im, data, info

    # -- one candidate ---------------------------------------------------------------
    def _reject(self, report: DownloadReport, item: ImageResult, reason: str, detail: str = "") -> None:
        row = {"label": item.label, "query": item.query, "url": self.key(item.original), "reason": reason,
               "detail": detail, "time": _now()}
        with self._lock:
            report.rejects[reason] += 1
            report.reject_rows.append(row)
            report.stats[item.label].rejected += 1
            self.manifest.reject(row)

    def _reserve(self, item: ImageResult, st: LabelStats, report: DownloadReport) -> bool:
        with self._cond:
            while self.limit is not None:
                if self.manifest.counts[item.label] + self._inflight[item.label] < self.limit:
                    break
                if self._inflight[item.label] == 0:
                    st.skipped += 1
                    report.untried.append(item)
                    return False
                self._cond.wait(0.1)  # an in-flight fetch may still fail and free a slot
            self._inflight[item.label] += 1
            return True

    def _one(self, item: ImageResult, folder: str, report: DownloadReport) -> None:
        st = report.stats[item.label]
        if self.stopping:
            report.untried.append(item)
            return  # not counted as done: it was never tried
        reserved = False
        try:
            reserved = self._reserve(item, st, report)
            if not reserved:
                return
            im, data, info = self._fetch(item)
            self._store(item, folder, im, data, info, st, report)
        except Rejected as rj:
            if rj.reason == "stopped":
                report.untried.append(item)
            else:
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

    def _store(self, item: ImageResult, folder: str, im: Any, data: bytes, info: dict[str, Any],
               st: LabelStats, report: DownloadReport) -> None:
        from .neardup import phash_hex

        sha = hashlib.sha256(data).hexdigest()
        with self._lock:
            dup = self.manifest.hashes.get(sha)
            if dup is None and self.limit is not None and self.manifest.counts[item.label] >= self.limit:
                st.skipped += 1
                return
            if dup is None:
                rel = f"{folder}/{sha[:16]}{IMAGE_EXT}"
                row: dict[str, Any] = {
                    "label": item.label, "folder": folder, "path": rel, "query": item.query, "chips": item.chips,
                    "url": self.key(item.original), "source_page": self.key(item.link), "source": item.source,
                    "title": item.title, "page": item.page, "position": item.position, "tag": item.tag,
                    "is_product": item.is_product, "thumbnail": self.key(item.thumbnail),
                    "search_id": item.search_id, "sha256": sha, "bytes": len(data), **info}
                self.manifest.hashes[sha] = row  # claim before writing, so a twin waits for nothing
                self.manifest.counts[item.label] += 1
        if dup is not None:
            raise Rejected("duplicate_content", f"same bytes as {dup['path']}")
        try:
            out = resize_image(im, self.resize)
            ow, oh = im.info.get("original_size") or im.size
            row.update(width=out.size[0], height=out.size[1], original_width=ow, original_height=oh,
                       phash=phash_hex(out), fetched_at=_now())
            write_atomic(self.root, rel.split("/")[1],
                         lambda fh: out.save(fh, "JPEG", quality=self.jpeg_quality), folder=folder)
        except (OSError, ValueError) as exc:
            with self._lock:
                self.manifest.hashes.pop(sha, None)
                self.manifest.counts[item.label] -= 1
            raise Rejected("write_error", str(exc)[:160]) from None
        with self._lock:
            self.manifest.add(row)
            self.manifest.urls[self.key(item.original)] = item.label
            st.accepted += 1
            report.from_thumbnail += bool(info.get("from_thumbnail"))

    # -- many ---------------------------------------------------------------------------
    def _triage(self, items: Sequence[ImageResult], report: DownloadReport) -> list[ImageResult]:
        """Drop what needs no fetch: already stored, repeated URLs, URLs bad for good."""
        todo: list[ImageResult] = []
        seen: set[str] = set()
        for item in items:
            st = report.stats.setdefault(item.label, LabelStats(existing=self.manifest.counts[item.label]))
            st.candidates += 1
            key = self.key(item.original)
            owner = self.manifest.urls.get(key)
            if owner == item.label:
                st.done += 1  # already downloaded by an earlier run: nothing to do
                continue
            if item.original and (owner is not None or key in seen):
                where = f"already stored under label {owner!r}" if owner else "URL listed earlier in this build"
                self._reject(report, item, "duplicate_url", where)
                st.done += 1
                continue
            seen.add(key)
            if self.skip_products and item.is_product:
                self._reject(report, item, "product", "SerpApi marks it is_product (skip_products=True)")
                st.done += 1
                continue
            if key and key in self.manifest.bad_urls:
                self._reject(report, item, "known_bad", "rejected for good by an earlier build")
                st.done += 1
                continue
            todo.append(item)
        return todo

    def run(self, items: Sequence[ImageResult], folders: Mapping[str, str]) -> DownloadReport:
        """Download ``items`` into their label folders; returns counts and rejects.

        Candidates already in the manifest (same URL) count as ``existing`` and are not
        fetched; a URL seen twice is a ``duplicate_url`` reject; URLs rejected for good
        before (HTML, SVG, bombs …) are ``known_bad`` and not fetched again. On Ctrl-C
        (or any error here) in-flight fetches are abandoned before the pool is joined, so
        the process can exit at once; the exception is re-raised.
        """
        t0 = time.perf_counter()
        report = DownloadReport()
        for label in folders:
            report.stats.setdefault(label, LabelStats(existing=self.manifest.counts[label]))
        todo = _round_robin(self._triage(items, report))
        if self.progress is not None:
            for label, st in report.stats.items():
                self.progress(label, st)
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="scrape-dl")
        try:
            futures = [pool.submit(self._one, it, folders[it.label], report) for it in todo]
            pending = set(futures)
            while pending:  # short waits: the main thread stays responsive to Ctrl-C
                _, pending = wait(pending, timeout=0.2)
            for f in futures:
                f.result()
        except BaseException:
            self.fetcher.abort()  # cut what is in flight so the join below is quick
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self.fetcher.close()
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
