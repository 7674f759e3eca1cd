"""SerpApi Google Images client (``engine=google_images``) as the API really behaves.

One ``GET search.json`` per results page (``ijn`` 0..99, 100 results a page). Every
answer is checked against :mod:`~workbench.scrape.schema` before it is read. Retries
are told apart by what SerpApi said: a 429 "run out of searches" stops at once
(:class:`SerpApiOutOfSearches`), a throughput 429 and 5xx back off (``Retry-After``
honoured up to a cap), a 200 with "no results" is an answer (not retried), a 200 with a
transient error text is retried unless ``no_cache=true`` (each retry would be billed).
``async=true`` and "Processing"/"Queued" answers are completed from the Search Archive
(``/searches/{id}.json``, free). ``/account.json`` (free) tells the searches left.

The API key is a secret: it is sent as the ``api_key`` query parameter (the only way
SerpApi accepts it), added only at the lowest frame that sends the request, never held
in a local of any frame an error passes through, and no error is raised inside an
``except`` block, so neither ``exc.__context__`` nor a verbose traceback can show it.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from .errors import (NO_RESULTS_HINT, OUT_OF_SEARCHES_RE, TRANSIENT_RE, ChipsNotFound, SerpApiAuthError,  # noqa: F401
                     SerpApiBadRequest, SerpApiConnectionError, SerpApiError, SerpApiNoResults, SerpApiNotFound,
                     SerpApiOutOfSearches, SerpApiRateLimited, SerpApiResponseError, SerpApiServerError,
                     SerpApiStopped, clean_url, error_for_status, redact, register_secret)
from .net import FetchError, Fetcher, Response, retry_after_seconds
from .params import PAGE_SIZE, PASSTHROUGH_PARAMS, check_page, check_params  # noqa: F401
from .schema import problems

#: SerpApi's JSON search endpoint.
DEFAULT_BASE_URL = "https://serpapi.com/search.json"
#: The most a search answer may weigh (a 100-result page is ~0.2-1 MB).
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
_SIZE_RE = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")


# -- helpers -------------------------------------------------------------------------
def parse_size(size: str | tuple[int, int] | None, field_name: str = "size") -> tuple[int, int] | None:
    """``"640x480"`` or ``(640, 480)`` → ``(640, 480)``; ``None`` stays ``None``."""
    if size is None or size == "":
        return None
    if isinstance(size, (tuple, list)) and len(size) == 2:
        w, h = size
    else:
        m = _SIZE_RE.match(str(size))
        if not m:
            raise ValueError(f"{field_name}: {size!r} is not an image size; expected WIDTHxHEIGHT such as "
                             f"'640x480' (positive integers)")
        w, h = m.groups()
    try:
        w, h = int(w), int(h)
    except (TypeError, ValueError):
        raise ValueError(f"{field_name}: {size!r} is not an image size; expected two positive integers") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"{field_name}: {size!r} must be positive, e.g. '640x480'")
    return w, h


def with_image_size(query: str, size: str | tuple[int, int] | None) -> str:
    """Add Google's exact-size operator: ``with_image_size("red fox", "640x480")`` →
    ``"red fox imagesize:640x480"`` (an existing ``imagesize:`` term is replaced)."""
    wh = parse_size(size)
    if wh is None:
        return query
    base = re.sub(r"\s*\bimagesize:\S+", "", query).strip()
    return f"{base} imagesize:{wh[0]}x{wh[1]}"


# -- results -------------------------------------------------------------------------
@dataclass
class ImageResult:
    """One entry of ``images_results`` plus the query/label/page/search it came from."""

    query: str
    label: str
    page: int
    position: int
    original: str
    title: str = ""
    link: str = ""
    source: str = ""
    thumbnail: str = ""
    original_width: int | None = None
    original_height: int | None = None
    is_product: bool | None = None
    tag: str = ""
    chips: str | None = None
    search_id: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, d: Mapping[str, Any], *, query: str, label: str, page: int, chips: str | None,
                 search_id: str = "") -> "ImageResult":
        """An entry as it came (a missing or non-http ``original`` is kept; the downloader rejects it)."""
        return cls(query=query, label=label, page=page, position=int(d.get("position") or 0),
                   original=str(d.get("original") or ""), title=str(d.get("title") or ""),
                   link=str(d.get("link") or ""), source=str(d.get("source") or ""),
                   thumbnail=str(d.get("thumbnail") or ""), original_width=d.get("original_width"),
                   original_height=d.get("original_height"), is_product=d.get("is_product"),
                   tag=str(d.get("tag") or ""), chips=chips, search_id=search_id, raw=dict(d))


@dataclass
class SearchPage:
    """One searched page: its images and what SerpApi said around them."""

    query: str
    label: str
    page: int
    chips: str | None
    metadata: dict[str, Any]
    images: list[ImageResult]
    related: list[str]
    suggested: list[str]
    shopping: int
    has_next: bool

    def record(self) -> dict[str, Any]:
        """The line ``searches.jsonl`` keeps for this page (URLs cleaned of keys)."""
        return {"query": self.query, "label": self.label, "page": self.page, "chips": self.chips,
                "search_metadata": self.metadata, "n_images": len(self.images), "related_searches": self.related,
                "suggested_searches": self.suggested, "shopping_results": self.shopping, "has_next": self.has_next}


def _metadata(data: Mapping[str, Any]) -> dict[str, Any]:
    md = data.get("search_metadata") or {}
    keep = ("id", "status", "created_at", "processed_at", "total_time_taken", "json_endpoint")
    return {k: (clean_url(md[k]) if k == "json_endpoint" else md[k]) for k in keep if k in md}


# -- client --------------------------------------------------------------------------
class SerpApiClient:
    """Google Images through SerpApi (see the module docstring).

    Args:
        api_key: SerpApi key (default ``$SERPAPI_API_KEY``). Never stored in any output.
        base_url: endpoint (default ``$SERPAPI_BASE_URL`` or SerpApi's ``search.json``).
        retries: retries for throughput 429s, 5xx, connection errors and transient errors.
        backoff: first backoff in seconds (doubling per retry).
        timeout: ``(connect, read)`` seconds per socket operation.
        deadline: total seconds for one search, retries and waits included.
        retry_after_cap: the longest wait a ``Retry-After`` may impose.
        defaults: parameters sent with every search (``google_domain``, ``gl``, ``hl`` …).
        stop: once set, an in-flight search is abandoned (:class:`SerpApiStopped`).
        async_timeout: how long to wait for an async/processing search in the archive.
    """

    def __init__(self, api_key: str | None = None, base_url: str | None = None, *, retries: int = 3,
                 backoff: float = 0.5, timeout: float | tuple[float, float] = (5.0, 30.0), deadline: float = 90.0,
                 retry_after_cap: float = 5.0, defaults: Mapping[str, Any] | None = None,
                 stop: threading.Event | None = None, async_timeout: float = 120.0,
                 max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self._api_key = api_key if api_key is not None else os.environ.get("SERPAPI_API_KEY") or None
        register_secret(self._api_key)
        self.base_url = base_url or os.environ.get("SERPAPI_BASE_URL") or DEFAULT_BASE_URL
        self.retries, self.backoff, self.deadline = int(retries), float(backoff), float(deadline)
        self.async_timeout = float(async_timeout)
        self.defaults: dict[str, Any] = {"google_domain": "google.com", "gl": "us", "hl": "en"}
        self.defaults.update(check_params(defaults or {}))
        self.fetcher = Fetcher(deadline=self.deadline, timeout=timeout, max_bytes=max_response_bytes, retries=0,
                               retry_after_cap=retry_after_cap, guard=None, stop=stop, pool=2,
                               headers={"Accept": "application/json"})
        #: billed searches this client sent (archive and account look-ups are free and not counted)
        self.searches = 0
        #: ``Retry-After`` asks cut to the cap, as ``(asked_s, waited_s)``
        self.capped: list[tuple[float, float]] = []
        self._chips_cache: dict[tuple, tuple[dict[str, str], dict[str, Any]]] = {}

    def __repr__(self) -> str:
        key = "'***'" if self._api_key else "None"
        return f"SerpApiClient(base_url={redact(self.base_url)!r}, api_key={key})"

    @property
    def has_key(self) -> bool:
        return bool(self._api_key)

    def _secret(self) -> dict[str, str]:
        return {"api_key": self._api_key} if self._api_key else {}

    def close(self) -> None:
        self.fetcher.close()

    def abort(self) -> None:
        """Abandon in-flight requests now (used on Ctrl-C)."""
        self.fetcher.abort()

    def __enter__(self) -> "SerpApiClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _sibling(self, path: str) -> str:
        """``/account.json`` or ``/searches/ID.json`` next to the configured ``search.json``."""
        base = self.base_url.split("?", 1)[0]
        if base.endswith("/search.json") or base.endswith("/search"):
            return base.rsplit("/", 1)[0] + path
        return base.rstrip("/") + path

    # -- one request -------------------------------------------------------------------
    def _get(self, url: str, query: Mapping[str, Any], end: float) -> "Response | FetchError":
        """One GET with the key added at the bottom; returns the error instead of raising it."""
        try:
            return self.fetcher.get(url, query, secret=self._secret, deadline=max(0.001, end - time.monotonic()))
        except FetchError as exc:
            return exc

    def _fail(self, outcome: FetchError, q: str | None) -> SerpApiError:
        """The typed error for a failed request (built outside any ``except`` block)."""
        if outcome.reason == "stopped":
            return SerpApiStopped("stopped before SerpApi answered", query=q)
        if outcome.reason == "too_large":
            return SerpApiResponseError(f"answer too large ({outcome.detail})", query=q)
        if outcome.status:
            msg = _error_text(outcome.body) or f"{outcome.detail} (no JSON error message)"
            msg = redact(msg, [self._api_key])
            if outcome.status == 429 and OUT_OF_SEARCHES_RE.search(msg):
                return SerpApiOutOfSearches(msg, status=429, query=q)
            return error_for_status(outcome.status)(msg, status=outcome.status, query=q)
        kind = "did not answer in time" if outcome.reason == "timeout" else "could not connect"
        return SerpApiConnectionError(f"SerpApi {kind} at {redact(self.base_url.split('?')[0])} after "
                                      f"{self.retries} retries ({outcome.detail})", query=q)

    def _retryable(self, outcome: "Response | FetchError", no_cache: bool) -> tuple[bool, float | None]:
        """Whether to try again, and the server's ``Retry-After`` (seconds) if it gave one."""
        if isinstance(outcome, Response):  # a 200 carrying an error text
            err = _error_text(outcome.body) or ""
            return bool(TRANSIENT_RE.search(err)) and not no_cache, None
        if outcome.reason in ("stopped", "too_large"):
            return False, None
        if outcome.status == 429:
            if OUT_OF_SEARCHES_RE.search(_error_text(outcome.body) or ""):
                return False, None
            return True, retry_after_seconds(outcome.headers.get("retry-after"))
        if outcome.status:
            return outcome.status >= 500, retry_after_seconds(outcome.headers.get("retry-after"))
        return outcome.reason in ("timeout", "connection_error"), None

    def _request(self, url: str, query: Mapping[str, Any], q: str | None, *, billed: bool,
                 no_cache: bool = False) -> dict[str, Any]:
        """GET a SerpApi JSON answer with retries; a 200 whose ``error`` is final raises."""
        end = time.monotonic() + self.deadline
        attempt = 0
        while True:
            if billed:
                self.searches += 1
            outcome = self._get(url, query, end)
            data = _json(outcome.body) if isinstance(outcome, Response) else None
            if isinstance(outcome, Response) and isinstance(data, dict) and not data.get("error"):
                return data
            again, asked = self._retryable(outcome, no_cache)
            if not again or attempt >= self.retries:
                break
            attempt += 1
            delay = self.backoff * 2 ** (attempt - 1)
            if asked is not None:
                if asked > self.fetcher.retry_after_cap:
                    self.capped.append((asked, self.fetcher.retry_after_cap))
                delay = max(delay, min(asked, self.fetcher.retry_after_cap))
            if delay >= end - time.monotonic():
                break
            if self.fetcher.sleep(delay):
                outcome = FetchError("stopped")
                break
        if isinstance(outcome, FetchError):
            raise self._fail(outcome, q)
        if not isinstance(data, dict):
            what = "not JSON" if data is None else f"{type(data).__name__}, not of type 'object'"
            raise SerpApiResponseError(f"the answer does not have SerpApi's shape: (the answer) is {what}",
                                       status=outcome.status, query=q)
        msg = redact(str(data.get("error")), [self._api_key])
        if NO_RESULTS_HINT in msg:
            raise SerpApiNoResults(msg, status=200, query=q)
        raise SerpApiError(msg, status=200, query=q)

    def search(self, q: str, *, page: int = 0, chips: str | None = None, **params: Any) -> dict[str, Any]:
        """One Google Images search (one results page), checked against the schema.

        An ``async=true`` search, or any "Processing"/"Queued" answer, is completed from
        the Search Archive. Raises a :class:`SerpApiError` subclass carrying SerpApi's
        own message; bad parameters are a ``ValueError`` before anything is sent.
        """
        if not isinstance(q, str) or not q.strip():
            raise ValueError(f"q: {q!r} is not a search query; expected a non-empty string")
        check_page(page)
        query: dict[str, Any] = {"engine": "google_images", "q": q}
        query.update(self.defaults)
        query.update(check_params(params))
        query["ijn"] = page
        if chips:
            query["chips"] = chips
        data = self._request(self.base_url, query, q, billed=True, no_cache=query.get("no_cache") == "true")
        data = self._complete(data, q)
        bad = problems(data, "google_images")
        if bad:
            raise SerpApiResponseError(f"the answer does not have SerpApi's Google Images shape: {'; '.join(bad)}",
                                       status=200, query=q)
        return data

    def _complete(self, data: dict[str, Any], q: str) -> dict[str, Any]:
        """Poll the Search Archive until a Queued/Processing search is done."""
        md = data.get("search_metadata")
        status = md.get("status") if isinstance(md, dict) else None
        if status not in ("Queued", "Processing"):
            if isinstance(md, dict) and isinstance(status, str) and status not in ("Success", "Cached"):
                raise SerpApiError(f"search {md.get('id')!r} ended with status {status!r}", status=200, query=q)
            return data
        sid = md.get("id")
        if not isinstance(sid, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", sid):
            raise SerpApiResponseError(f"search_metadata.id: {sid!r} is not a search id", status=200, query=q)
        end, wait = time.monotonic() + self.async_timeout, 0.2
        while True:
            if time.monotonic() + wait > end:
                raise SerpApiConnectionError(f"search {sid} still {status!r} after {self.async_timeout:g}s "
                                             f"in the Search Archive", query=q)
            if self.fetcher.sleep(wait):
                raise SerpApiStopped(f"stopped while search {sid} was {status!r}", query=q)
            data = self._request(self._sibling(f"/searches/{sid}.json"), {}, q, billed=False)
            md = data.get("search_metadata") if isinstance(data.get("search_metadata"), dict) else {}
            status = md.get("status")
            if status not in ("Queued", "Processing"):
                return self._complete(data, q)
            wait = min(wait * 2, 2.0)

    def archive(self, search_id: str) -> dict[str, Any]:
        """A past search from the Search Archive (``/searches/{id}.json``; free)."""
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", str(search_id)):
            raise ValueError(f"search_id: {search_id!r} is not a SerpApi search id")
        return self._request(self._sibling(f"/searches/{search_id}.json"), {}, None, billed=False)

    def account(self) -> dict[str, Any]:
        """``/account.json`` (free): plan, ``total_searches_left``, this month's usage.

        The ``api_key`` and ``account_email`` fields are dropped from the answer.
        """
        data = self._request(self._sibling("/account.json"), {}, None, billed=False)
        bad = problems(data, "account")
        if bad:
            raise SerpApiResponseError(f"the account answer does not have SerpApi's shape: {'; '.join(bad)}")
        return {k: v for k, v in data.items() if k not in ("api_key", "account_email")}

    # -- chips ------------------------------------------------------------------------
    def _page0(self, q: str, **params: Any) -> tuple[dict[str, str], dict[str, Any]]:
        key = (q, tuple(sorted((k, str(v)) for k, v in params.items())))
        if key not in self._chips_cache:
            data = self.search(q, page=0, **params)
            chips = {str(s["name"]): str(s["chips"]) for s in data.get("suggested_searches") or []
                     if s.get("name") and s.get("chips")}
            self._chips_cache[key] = (chips, data)
        return self._chips_cache[key]

    def suggested_chips(self, q: str, **params: Any) -> dict[str, str]:
        """``{name: chips}`` from the query's ``suggested_searches`` (page 0, cached per query)."""
        return dict(self._page0(q, **params)[0])

    def resolve_chips(self, q: str, name: str, **params: Any) -> str:
        """The ``chips`` string for a suggested-search name (case-insensitive)."""
        chips = self.suggested_chips(q, **params)
        for n, c in chips.items():
            if n.casefold() == name.strip().casefold():
                return c
        avail = ", ".join(repr(n) for n in chips) or "none"
        raise ChipsNotFound(f"chips: {name!r} is not a suggested search for {q!r}; available: {avail}", query=q)

    # -- many pages ---------------------------------------------------------------------
    def iter_pages(self, q: str, *, label: str | None = None, pages: int = 1, chips_name: str | None = None,
                   chips: str | None = None, size: str | tuple[int, int] | None = None,
                   **params: Any) -> Iterator[SearchPage]:
        """Yield up to ``pages`` searched pages of ``q`` (one search each).

        ``chips_name`` is resolved on page 0's ``suggested_searches`` (one extra lookup
        per query, cached). Paging stops early when there is no ``serpapi_pagination.next``
        or a later page is empty; an empty *first* page raises :class:`SerpApiNoResults`.
        """
        if isinstance(pages, bool) or not isinstance(pages, int) or not 1 <= pages <= 100:
            raise ValueError(f"pages: {pages!r} is not allowed; expected an integer 1..100 (ijn 0..99)")
        full_q = with_image_size(q, size)
        label = label or q
        lookup: dict[str, Any] | None = None
        if chips_name and not chips:
            chips = self.resolve_chips(full_q, chips_name, **params)
            lookup = self._page0(full_q, **params)[1]
        for page in range(pages):
            try:
                data = self.search(full_q, page=page, chips=chips, **params)
            except SerpApiNoResults:
                if page == 0:
                    raise
                return  # past the last page
            src = lookup if (lookup is not None and page == 0) else data
            sid = str((data.get("search_metadata") or {}).get("id") or "")
            results = data.get("images_results") or []
            yield SearchPage(
                query=q, label=label, page=page, chips=chips, metadata=_metadata(data),
                images=[ImageResult.from_api(d, query=q, label=label, page=page, chips=chips, search_id=sid)
                        for d in results],
                related=[str(r["query"]) for r in src.get("related_searches") or [] if r.get("query")],
                suggested=[str(s["name"]) for s in src.get("suggested_searches") or [] if s.get("name")],
                shopping=len(data.get("shopping_results") or []),
                has_next=bool((data.get("serpapi_pagination") or {}).get("next")))
            if not results or not (data.get("serpapi_pagination") or {}).get("next"):
                return

    def iter_images(self, q: str, **kwargs: Any) -> Iterator[ImageResult]:
        """The image results of :meth:`iter_pages`, flattened."""
        for page in self.iter_pages(q, **kwargs):
            yield from page.images


def _json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def _error_text(body: bytes) -> str | None:
    data = _json(body)
    if isinstance(data, dict) and isinstance(data.get("error"), str) and data["error"]:
        return data["error"]
    return None
