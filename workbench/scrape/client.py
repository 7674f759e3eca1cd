"""SerpApi Google Images client (``engine=google_images``) over ``requests``.

One ``GET`` per results page (``ijn``; 100 results a page). Retries on 429/5xx and on
connect/read timeouts go through urllib3's ``Retry`` mounted on an ``HTTPAdapter``
(exponential backoff); only the one case ``Retry`` cannot see — a *200* response whose
body carries ``{"error": ...}`` ("Google Images hasn't returned any results ...", often
transient) — is retried by hand, with the same backoff.

The API key is a secret: it is sent as the ``api_key`` query parameter (the only way
SerpApi accepts it) and scrubbed from every exception message, ``repr`` and urllib3
debug log line this module can reach. Exceptions are raised ``from None`` so a
traceback never shows the ``requests`` error whose text holds the full URL.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import quote_plus

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

#: SerpApi's JSON search endpoint.
DEFAULT_BASE_URL = "https://serpapi.com/search.json"
#: Results per Google Images page (SerpApi's ``ijn`` pages).
PAGE_SIZE = 100
#: Parameters the client forwards as-is (SerpApi's documented Google Images filters).
PASSTHROUGH_PARAMS = (
    "google_domain", "gl", "hl", "cr", "lr", "location", "uule", "safe", "nfpr", "filter", "no_cache",
    "async", "tbs", "imgar", "imgsz", "image_color", "image_type", "licenses", "period_unit",
    "period_value", "start_date", "end_date", "device", "output", "time_period",
)
#: HTTP statuses retried with backoff (then reported as typed errors).
RETRY_STATUSES = (429, 500, 502, 503, 504)
#: What the API says when a query (or page) has no results; often transient, retried.
NO_RESULTS_HINT = "hasn't returned any results"

_SIZE_RE = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")
_KEY_PARAM_RE = re.compile(r"(api_key=)[^&\s'\"]*")


# -- errors ------------------------------------------------------------------------
class SerpApiError(RuntimeError):
    """A SerpApi request failed; ``message`` is SerpApi's own ``error`` text when it sent one."""

    def __init__(self, message: str, status: int | None = None, query: str | None = None) -> None:
        self.message = message
        self.status = status
        self.query = query
        where = f" (query {query!r})" if query else ""
        code = f"HTTP {status}: " if status else ""
        super().__init__(f"{code}{message}{where}")


class SerpApiBadRequest(SerpApiError):
    """HTTP 400: a parameter SerpApi does not accept."""


class SerpApiAuthError(SerpApiError):
    """HTTP 401/403: missing or invalid API key, or an account without access."""


class SerpApiNotFound(SerpApiError):
    """HTTP 404: unknown endpoint or search."""


class SerpApiRateLimited(SerpApiError):
    """HTTP 429 after the retries: too many requests, or the account is out of searches."""


class SerpApiServerError(SerpApiError):
    """HTTP 5xx after the retries."""


class SerpApiNoResults(SerpApiError):
    """A 200 response with an ``error`` key, e.g. no images for the query (after the retries)."""


class SerpApiConnectionError(SerpApiError):
    """Could not reach the endpoint, or it timed out every time."""


class ChipsNotFound(SerpApiError, ValueError):
    """The requested chips name is not among the query's ``suggested_searches``."""


_STATUS_ERRORS: dict[int, type[SerpApiError]] = {
    400: SerpApiBadRequest, 401: SerpApiAuthError, 403: SerpApiAuthError, 404: SerpApiNotFound,
    429: SerpApiRateLimited,
}


def error_for_status(status: int) -> type[SerpApiError]:
    """The exception class for an HTTP status."""
    if status in _STATUS_ERRORS:
        return _STATUS_ERRORS[status]
    return SerpApiServerError if status >= 500 else SerpApiError


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


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove API keys from ``text``: every ``api_key=...`` value and every given secret."""
    out = _KEY_PARAM_RE.sub(r"\1***", str(text))
    for s in secrets:
        if s:
            out = out.replace(s, "***").replace(quote_plus(s), "***")
    return out


def _cause(exc: BaseException) -> str:
    """The root cause of a ``requests`` error in a few words (its text nests URLs and reprs)."""
    text = str(exc)
    m = re.search(r"\[Errno -?\d+\] [^'\")\]]+", text)
    if m:
        return m.group(0).strip()
    m = re.search(r"(Read|Connect) timed out\.?( \(\w+ timeout=[\d.]+\))?", text)
    if m:
        return m.group(0)
    return type(exc).__name__


class _RedactingFilter(logging.Filter):
    """Scrubs API keys from urllib3's debug lines (they print full request URLs)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:
            return True
        clean = redact(msg, list(self.secrets))
        if clean != msg:
            record.msg, record.args = clean, ()
        return True


_FILTER = _RedactingFilter()
for _name in ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.connection", "requests"):
    logging.getLogger(_name).addFilter(_FILTER)


def _register_secret(key: str | None) -> None:
    if key:
        with _FILTER.lock:
            _FILTER.secrets.add(key)


def make_session(retries: int = 3, backoff: float = 0.5, pool: int = 10,
                 statuses: Iterable[int] = RETRY_STATUSES) -> requests.Session:
    """A ``requests.Session`` retrying GETs on ``statuses`` and connect/read errors.

    Exponential backoff ``backoff * 2**(n-1)`` seconds (urllib3 ``Retry``); the last
    response is returned rather than raised so callers can read the JSON error body.
    """
    retry = Retry(total=retries, connect=retries, read=retries, status=retries, other=0,
                  backoff_factor=backoff, status_forcelist=tuple(statuses), allowed_methods=frozenset({"GET"}),
                  raise_on_status=False, respect_retry_after_header=True)
    adapter = HTTPAdapter(max_retries=retry, pool_connections=pool, pool_maxsize=pool)
    s = requests.Session()
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


# -- results -------------------------------------------------------------------------
@dataclass
class ImageResult:
    """One entry of ``images_results`` plus the query/label/page it came from."""

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
    chips: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, d: Mapping[str, Any], *, query: str, label: str, page: int,
                 chips: str | None) -> "ImageResult | None":
        url = d.get("original") or ""
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return None
        return cls(query=query, label=label, page=page, position=int(d.get("position") or 0), original=url,
                   title=str(d.get("title") or ""), link=str(d.get("link") or ""),
                   source=str(d.get("source") or ""), thumbnail=str(d.get("thumbnail") or ""),
                   original_width=_int_or_none(d.get("original_width")),
                   original_height=_int_or_none(d.get("original_height")),
                   is_product=d.get("is_product"), chips=chips, raw=dict(d))


def _int_or_none(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


# -- client --------------------------------------------------------------------------
class SerpApiClient:
    """Google Images through SerpApi.

    Args:
        api_key: SerpApi key (default ``$SERPAPI_API_KEY``). Never stored in any output.
        base_url: endpoint (default ``$SERPAPI_BASE_URL`` or SerpApi's ``search.json``).
        retries: retries for 429/5xx/timeouts (urllib3 ``Retry``) and for 200-with-error.
        backoff: backoff factor in seconds (doubling per retry).
        timeout: ``(connect, read)`` seconds per request.
        defaults: parameters sent with every search (``google_domain``, ``gl``, ``hl`` …).
    """

    def __init__(self, api_key: str | None = None, base_url: str | None = None, *, retries: int = 3,
                 backoff: float = 0.5, timeout: float | tuple[float, float] = (5.0, 30.0),
                 defaults: Mapping[str, Any] | None = None) -> None:
        self._api_key = api_key if api_key is not None else os.environ.get("SERPAPI_API_KEY") or None
        _register_secret(self._api_key)
        self.base_url = base_url or os.environ.get("SERPAPI_BASE_URL") or DEFAULT_BASE_URL
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.timeout = timeout
        self.defaults: dict[str, Any] = {"google_domain": "google.com", "gl": "us", "hl": "en"}
        self.defaults.update(defaults or {})
        self.session = make_session(retries=self.retries, backoff=self.backoff)
        #: number of HTTP searches this client has issued (retries by urllib3 not counted)
        self.searches = 0
        self._chips_cache: dict[tuple, dict[str, str]] = {}

    def __repr__(self) -> str:
        key = "'***'" if self._api_key else "None"
        return f"SerpApiClient(base_url={redact(self.base_url)!r}, api_key={key})"

    @property
    def has_key(self) -> bool:
        return bool(self._api_key)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "SerpApiClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- one request ----------------------------------------------------------------
    def search(self, q: str, *, page: int = 0, chips: str | None = None, **params: Any) -> dict[str, Any]:
        """One Google Images search (one results page). Returns SerpApi's JSON.

        Raises a :class:`SerpApiError` subclass carrying SerpApi's own error message.
        """
        if not isinstance(q, str) or not q.strip():
            raise ValueError(f"q: {q!r} is not a search query; expected a non-empty string")
        if int(page) < 0:
            raise ValueError(f"page: {page!r} must be >= 0")
        unknown = [k for k in params if k not in PASSTHROUGH_PARAMS]
        if unknown:
            raise ValueError(f"params: unknown parameter(s) {', '.join(map(repr, unknown))}; allowed: "
                             f"{', '.join(PASSTHROUGH_PARAMS)}")
        query: dict[str, Any] = {"engine": "google_images", "q": q}
        query.update(self.defaults)
        query.update({k: v for k, v in params.items() if v is not None})
        query["ijn"] = int(page)
        if chips:
            query["chips"] = chips
        if self._api_key:
            query["api_key"] = self._api_key
        last: SerpApiError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            data = self._get(query, q)
            err = data.get("error")
            if not err:
                return data
            last = SerpApiNoResults(redact(str(err), [self._api_key]), status=200, query=q)
        assert last is not None
        raise last

    def _get(self, query: Mapping[str, Any], q: str) -> dict[str, Any]:
        self.searches += 1
        try:
            resp = self.session.get(self.base_url, params=query, timeout=self.timeout,
                                    headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            # The exception text carries the full URL (key included): say it again, short and clean.
            timed_out = isinstance(exc, requests.Timeout) or "timed out" in str(exc).lower()
            kind = "timed out" if timed_out else "could not connect"
            raise SerpApiConnectionError(f"SerpApi {kind} at {redact(self.base_url.split('?')[0])} after "
                                         f"{self.retries} retries ({_cause(exc)})", query=q) from None
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.status_code != 200:
            msg = data.get("error") if isinstance(data, dict) and data.get("error") else (
                f"{resp.reason or 'error'} (no JSON error message)")
            cls = error_for_status(resp.status_code)
            raise cls(redact(str(msg), [self._api_key]), status=resp.status_code, query=q) from None
        if not isinstance(data, dict):
            raise SerpApiError("response is not a JSON object", status=resp.status_code, query=q)
        return data

    # -- chips ------------------------------------------------------------------------
    def suggested_chips(self, q: str, **params: Any) -> dict[str, str]:
        """``{name: chips}`` from the query's ``suggested_searches`` (page 0, cached per query)."""
        key = (q, tuple(sorted((k, str(v)) for k, v in params.items())))
        if key not in self._chips_cache:
            data = self.search(q, page=0, **params)
            self._chips_cache[key] = {str(s.get("name")): str(s.get("chips")) for s in
                                      data.get("suggested_searches") or [] if s.get("name") and s.get("chips")}
        return dict(self._chips_cache[key])

    def resolve_chips(self, q: str, name: str, **params: Any) -> str:
        """The ``chips`` string for a suggested-search name (case-insensitive)."""
        chips = self.suggested_chips(q, **params)
        for n, c in chips.items():
            if n.casefold() == name.strip().casefold():
                return c
        avail = ", ".join(repr(n) for n in chips) or "none"
        raise ChipsNotFound(f"chips: {name!r} is not a suggested search for {q!r}; available: {avail}",
                            query=q)

    # -- many pages ---------------------------------------------------------------------
    def iter_images(self, q: str, *, label: str | None = None, pages: int = 1, chips_name: str | None = None,
                    chips: str | None = None, size: str | tuple[int, int] | None = None,
                    **params: Any) -> Iterator[ImageResult]:
        """Yield image results for ``q`` over ``pages`` pages (one search per page).

        ``chips_name`` is resolved on page 0's ``suggested_searches`` (one extra lookup
        search per query, cached) and its ``chips`` string used for every page. Paging
        stops early when SerpApi has no ``serpapi_pagination.next`` or a later page is
        empty; an empty *first* page raises :class:`SerpApiNoResults`.
        """
        if int(pages) < 1:
            raise ValueError(f"pages: {pages!r} must be >= 1")
        full_q = with_image_size(q, size)
        label = label or q
        if chips_name and not chips:
            chips = self.resolve_chips(full_q, chips_name, **params)
        for page in range(int(pages)):
            try:
                data = self.search(full_q, page=page, chips=chips, **params)
            except SerpApiNoResults:
                if page == 0:
                    raise
                return  # past the last page
            results = data.get("images_results") or []
            for d in results:
                item = ImageResult.from_api(d, query=q, label=label, page=page, chips=chips)
                if item is not None:
                    yield item
            if not results or not (data.get("serpapi_pagination") or {}).get("next"):
                return
