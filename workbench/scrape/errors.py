"""The SerpApi error model and the key scrubbing every message goes through."""
from __future__ import annotations

import logging
import re
import threading
from typing import Iterable
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit, urlunsplit

_KEY_PARAM_RE = re.compile(r"(api_key=)[^&\s'\"]*")


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
    """HTTP 429 after the retries: more requests than the plan's hourly throughput."""


class SerpApiOutOfSearches(SerpApiRateLimited):
    """HTTP 429 "Your account has run out of searches.": retrying cannot help; the build stops."""


class SerpApiServerError(SerpApiError):
    """HTTP 5xx after the retries."""


class SerpApiNoResults(SerpApiError):
    """A 200 answer whose ``error`` says Google has no images for the query (not retried)."""


class SerpApiConnectionError(SerpApiError):
    """Could not reach the endpoint, or it did not answer within the deadline."""


class SerpApiResponseError(SerpApiError):
    """The answer is not what SerpApi's schema says (names the path and the shape), or too large."""


class SerpApiStopped(SerpApiError):
    """The search was abandoned because Stop (or Ctrl-C) was requested."""


class ChipsNotFound(SerpApiError, ValueError):
    """The requested chips name is not among the query's ``suggested_searches``."""


_STATUS_ERRORS: dict[int, type[SerpApiError]] = {
    400: SerpApiBadRequest, 401: SerpApiAuthError, 403: SerpApiAuthError, 404: SerpApiNotFound,
    429: SerpApiRateLimited,
}
#: What SerpApi says when a query (or a page past the last) has no results.
NO_RESULTS_HINT = "hasn't returned any results"
#: 429 texts that mean the account's searches are used up (not a throughput limit).
OUT_OF_SEARCHES_RE = re.compile(r"run out of searches|no searches left|out of searches", re.I)
#: 200-with-error texts worth retrying (a transient failure on SerpApi's or Google's side).
TRANSIENT_RE = re.compile(r"try again|temporar|timed? ?out|unavailable|server error|overloaded", re.I)


def error_for_status(status: int) -> type[SerpApiError]:
    """The exception class for an HTTP status."""
    if status in _STATUS_ERRORS:
        return _STATUS_ERRORS[status]
    return SerpApiServerError if status >= 500 else SerpApiError


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove API keys from ``text``: every ``api_key=...`` value and every given secret."""
    out = _KEY_PARAM_RE.sub(r"\1***", str(text))
    for s in secrets:
        if s:
            out = out.replace(s, "***").replace(quote_plus(s), "***")
    return out


def clean_url(url: str | None) -> str:
    """A server-supplied URL fit to store: any ``api_key`` query parameter removed."""
    if not url or not isinstance(url, str):
        return ""
    if "api_key" not in url:
        return url
    try:
        p = urlsplit(url)
        q = [(k, v) for k, v in parse_qsl(p.query, keep_blank_values=True) if k.lower() != "api_key"]
        return urlunsplit((p.scheme, p.netloc, p.path, urlencode(q), p.fragment))
    except ValueError:
        return redact(url)


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
for _name in ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.connection", "urllib3.poolmanager",
              "requests"):
    logging.getLogger(_name).addFilter(_FILTER)


def register_secret(key: str | None) -> None:
    """Scrub ``key`` from every urllib3 log line from now on."""
    if key:
        with _FILTER.lock:
            _FILTER.secrets.add(key)
