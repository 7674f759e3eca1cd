"""Bounded HTTP GETs: a total deadline, Stop/Ctrl-C within a fraction of a second, a byte
cap, capped ``Retry-After``, and an SSRF guard checked on every connection and redirect.

Per-read timeouts cannot bound a request: a server sending one byte a second never trips
them. Here every :meth:`Fetcher.get` carries a *total* deadline, and a watchdog thread
shuts down the socket of any request whose deadline passed or whose Stop was set; the
blocked read then returns at once and the request fails with ``timeout`` or ``stopped``.

The guard is applied where the socket is opened (a urllib3 connection subclass resolves
the host, checks every address and connects to a checked one), so DNS answers that
change between check and use (rebinding) cannot slip through; redirects are followed by
hand, each hop checked the same way. Loopback, private, link-local, multicast, reserved
and unspecified addresses and non-http(s) schemes are refused, except origins listed as
allowed (the workbench's own loopback stub).

No well-kept library does this for urllib3 2 (``advocate`` is unmaintained since 2020),
so it is written here on the public urllib3 pool/connection classes.
"""
from __future__ import annotations

import email.utils
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlencode, urljoin

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .guard import AddressGuard, FetchError  # noqa: F401 (re-exported)

#: Statuses retried with backoff (``Retry-After`` honoured up to the cap).
RETRY_STATUSES = (429, 500, 502, 503, 504)
#: Longest wait a ``Retry-After`` header can impose (seconds); longer asks are cut to this.
RETRY_AFTER_CAP = 5.0
#: How often the watchdog looks for expired deadlines and Stop (seconds).
WATCH_INTERVAL = 0.05
_CHUNK = 65536


@dataclass
class Response:
    """A complete, capped response body and where it finally came from."""

    status: int
    headers: dict[str, str]
    body: bytes
    url: str
    redirects: list[str] = field(default_factory=list)
    waited_s: float = 0.0              # seconds spent in backoff / Retry-After waits
    retry_after_capped: float | None = None  # the largest Retry-After asked that was cut to the cap


# -- connections that know their request ------------------------------------------------
_CURRENT = threading.local()


class _Ticket:
    """One in-flight GET: its deadline, the connection carrying it, and why it was cut."""

    __slots__ = ("deadline", "guard", "conn", "cut")

    def __init__(self, deadline: float, guard: AddressGuard | None) -> None:
        self.deadline, self.guard = deadline, guard
        self.conn: HTTPConnection | None = None
        self.cut: str | None = None  # "timeout" | "stopped"

    def shutdown(self, why: str) -> None:
        if self.cut is None:
            self.cut = why
        conn = self.conn
        sock = getattr(conn, "sock", None) if conn is not None else None
        if sock is not None:
            try:  # socket.socket's shutdown, not SSLSocket's (which drops its state first)
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass


class _Tracked:
    """Mixin: binds the connection to the thread's current ticket and opens it through the guard."""

    def _bind(self) -> _Ticket | None:
        t = getattr(_CURRENT, "ticket", None)
        if t is not None:
            t.conn = self  # type: ignore[assignment]
            if t.cut:  # cut before the socket existed: fail now
                raise FetchError(t.cut, "cut before connecting")
        return t

    def _new_conn(self) -> socket.socket:  # urllib3's hook for opening the socket
        t = self._bind()
        guard = t.guard if t is not None else None
        timeout = self.timeout  # type: ignore[attr-defined]
        if guard is None:
            return super()._new_conn()  # type: ignore[misc]
        try:
            return guard.connect(self.host, self.port, timeout,  # type: ignore[attr-defined]
                                 self.source_address, self.socket_options)  # type: ignore[attr-defined]
        except socket.timeout:
            raise FetchError("timeout", f"connect to {self.host} timed out") from None  # type: ignore[attr-defined]
        except OSError as exc:
            raise FetchError("connection_error", f"{self.host}: {exc.strerror or exc}") from None  # type: ignore[attr-defined]

    def request(self, *args: Any, **kwargs: Any) -> Any:
        self._bind()
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Tracked, HTTPConnection):
    pass


class _HTTPSConnection(_Tracked, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds (a number or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Fetcher:
    """Bounded GETs over one urllib3 pool manager (thread-safe; see module docstring).

    Args:
        deadline: total seconds for one :meth:`get`, retries and waits included.
        timeout: ``(connect, read)`` seconds per socket operation (each cut to what is left).
        max_bytes: body cap (``Content-Length`` checked first, then the stream).
        retries: extra attempts on :data:`RETRY_STATUSES`, connection errors and read timeouts.
        backoff: first backoff in seconds, doubling per retry.
        retry_after_cap: the longest wait a ``Retry-After`` may impose.
        guard: an :class:`AddressGuard` (``None``: any address, for the configured API endpoint).
        stop: once set, in-flight requests are cut and new ones fail with ``stopped``.
        max_redirects: redirects followed by hand (each one checked by the guard).
        headers: sent with every request.
        pool: connections kept per host.
    """

    def __init__(self, *, deadline: float = 30.0, timeout: float | tuple[float, float] = (5.0, 15.0),
                 max_bytes: int = 20 * 1024 * 1024, retries: int = 2, backoff: float = 0.3,
                 retry_after_cap: float = RETRY_AFTER_CAP, guard: AddressGuard | None = None,
                 stop: threading.Event | None = None, max_redirects: int = 5,
                 headers: Mapping[str, str] | None = None, pool: int = 8,
                 retry_statuses: Iterable[int] = RETRY_STATUSES) -> None:
        if not deadline or deadline <= 0:
            raise ValueError(f"deadline: {deadline!r} must be a positive number of seconds")
        self.deadline = float(deadline)
        self.connect_timeout, self.read_timeout = (timeout, timeout) if isinstance(timeout, (int, float)) else timeout
        self.max_bytes, self.retries, self.backoff = int(max_bytes), int(retries), float(backoff)
        self.retry_after_cap = float(retry_after_cap)
        self.guard, self.stop, self.max_redirects = guard, stop, int(max_redirects)
        self.retry_statuses = frozenset(retry_statuses)
        import certifi

        self.headers = dict(headers or {})
        self._pm = urllib3.PoolManager(num_pools=64, maxsize=max(1, pool), block=False, retries=False,
                                       ca_certs=certifi.where())
        self._pm.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        self._lock = threading.Lock()
        self._tickets: set[_Ticket] = set()
        self._aborted = threading.Event()
        self._watch: threading.Thread | None = None
        #: ``Retry-After`` asks that were cut to the cap: ``[(asked_s, waited_s)]``
        self.capped: list[tuple[float, float]] = []

    # -- lifecycle ------------------------------------------------------------------
    def abort(self) -> None:
        """Cut every in-flight request now and refuse new ones (Ctrl-C, errors)."""
        self._aborted.set()
        with self._lock:
            tickets = list(self._tickets)
        for t in tickets:
            t.shutdown("stopped")

    def close(self) -> None:
        """Release pooled connections (the fetcher stays usable; the watchdog ends when idle)."""
        self._pm.clear()

    def __enter__(self) -> "Fetcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def stopping(self) -> bool:
        return self._aborted.is_set() or bool(self.stop is not None and self.stop.is_set())

    def _watchdog(self) -> None:
        while True:
            now = time.monotonic()
            stopping = self.stopping
            with self._lock:
                tickets = list(self._tickets)
                if not tickets:
                    self._watch = None
                    return
            for t in tickets:
                if stopping:
                    t.shutdown("stopped")
                elif now >= t.deadline:
                    t.shutdown("timeout")
            time.sleep(WATCH_INTERVAL)

    def _track(self, t: _Ticket) -> None:
        with self._lock:
            self._tickets.add(t)
            if self._watch is None:
                self._watch = threading.Thread(target=self._watchdog, name="fetch-watchdog", daemon=True)
                self._watch.start()

    def _untrack(self, t: _Ticket) -> None:
        with self._lock:
            self._tickets.discard(t)

    # -- one GET ---------------------------------------------------------------------
    def get(self, url: str, params: Mapping[str, Any] | None = None, *, headers: Mapping[str, str] | None = None,
            secret: Callable[[], Mapping[str, str]] | None = None, deadline: float | None = None) -> Response:
        """GET ``url`` (plus ``params``) within the deadline; raises :class:`FetchError`.

        ``secret`` returns parameters added only where the request is sent (an API key),
        so no frame of a traceback this raises holds them in a local variable.
        Non-2xx responses raise ``FetchError("http_error", status=..., body=...)`` after
        the retries the status allows.
        """
        end = time.monotonic() + (deadline or self.deadline)
        waited, capped = 0.0, None
        redirects: list[str] = []
        current = url if not params else f"{url}{'&' if '?' in url else '?'}{urlencode(params, doseq=True)}"
        attempt = 0
        while True:
            if self.stopping:
                raise FetchError("stopped", "stop requested before the request")
            if self.guard is not None:
                self.guard.check_url(current)
            outcome = self._attempt(current, headers, secret, end)
            if isinstance(outcome, Response):
                if 300 <= outcome.status < 400 and outcome.headers.get("location"):
                    if len(redirects) >= self.max_redirects:
                        raise FetchError("too_many_redirects", f"more than {self.max_redirects} redirects")
                    redirects.append(current)
                    current = urljoin(current, outcome.headers["location"])
                    secret = None  # never send a secret to where a server pointed us
                    continue
                if 200 <= outcome.status < 300:
                    outcome.redirects, outcome.waited_s, outcome.retry_after_capped = redirects, waited, capped
                    return outcome
                retryable = outcome.status in self.retry_statuses
                failure = FetchError("http_error", f"HTTP {outcome.status}", status=outcome.status,
                                     body=outcome.body, headers=outcome.headers)
            else:
                failure = outcome
                retryable = failure.reason in ("connection_error", "read_timeout")
            if not retryable or attempt >= self.retries:
                if failure.reason == "read_timeout":
                    failure.reason = "timeout"
                failure.retry_after_capped = capped
                raise failure
            attempt += 1
            delay = self.backoff * 2 ** (attempt - 1)
            asked = retry_after_seconds(failure.headers.get("retry-after")) if failure.status else None
            if asked is not None:
                if asked > self.retry_after_cap:
                    capped = max(capped or 0.0, asked)
                    with self._lock:
                        self.capped.append((asked, self.retry_after_cap))
                delay = max(delay, min(asked, self.retry_after_cap))
            left = end - time.monotonic()
            if delay >= left:
                raise FetchError("timeout", f"deadline of {deadline or self.deadline:g}s reached while backing "
                                            f"off ({failure})", status=failure.status, body=failure.body)
            if self.sleep(delay):
                raise FetchError("stopped", "stop requested while backing off")
            waited += delay

    def sleep(self, seconds: float) -> bool:
        """Sleep, waking early on Stop; True if stopped."""
        end = time.monotonic() + seconds
        while True:
            if self.stopping:
                return True
            left = end - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, WATCH_INTERVAL))

    def _attempt(self, url: str, headers: Mapping[str, str] | None,
                 secret: Callable[[], Mapping[str, str]] | None, end: float) -> "Response | FetchError":
        """One request; never raises (a returned error keeps URL-holding locals out of tracebacks)."""
        left = end - time.monotonic()
        if left <= 0:
            return FetchError("timeout", "deadline reached")
        ticket = _Ticket(end, self.guard)
        self._track(ticket)
        _CURRENT.ticket = ticket
        resp = None
        try:
            full = url
            if secret is not None:
                full = f"{url}{'&' if '?' in url else '?'}{urlencode(dict(secret()))}"
            to = urllib3.Timeout(connect=min(self.connect_timeout, left), read=min(self.read_timeout, left))
            resp = self._pm.request("GET", full, headers={**self.headers, **(headers or {})}, timeout=to, redirect=False,
                                    retries=False, preload_content=False)
            del full
            status = resp.status
            hdrs = {k.lower(): v for k, v in resp.headers.items()}
            length = hdrs.get("content-length", "")
            if length.isdigit() and int(length) > self.max_bytes:
                return FetchError("too_large", f"Content-Length {int(length)} > {self.max_bytes} bytes", status=status)
            buf = bytearray()
            while True:
                chunk = resp.read(_CHUNK)
                if not chunk:
                    break
                buf += chunk
                if len(buf) > self.max_bytes:
                    return FetchError("too_large", f"more than {self.max_bytes} bytes", status=status)
            if ticket.cut:
                return self._cut(ticket)
            return Response(status=status, headers=hdrs, body=bytes(buf), url=url)
        except FetchError as exc:
            return self._cut(ticket) if ticket.cut else FetchError(exc.reason, exc.detail)
        except Exception as exc:  # urllib3/http.client/ssl errors: classify without keeping the URL
            if ticket.cut:
                return self._cut(ticket)
            return _classify(exc)
        finally:
            _CURRENT.ticket = None
            self._untrack(ticket)
            if resp is not None:
                if ticket.cut or not resp.isclosed():
                    resp.close()  # a cut or half-read connection must not go back to the pool
                resp.release_conn()

    def _cut(self, ticket: _Ticket) -> FetchError:
        if ticket.cut == "stopped":
            return FetchError("stopped", "stop requested: the request was abandoned")
        return FetchError("timeout", f"no complete answer within the {self.deadline:g}s deadline")


def _classify(exc: BaseException) -> FetchError:
    """An exception from urllib3 as a short, URL-free :class:`FetchError`."""
    from urllib3 import exceptions as e

    inner = getattr(exc, "reason", None) or exc
    if isinstance(exc, e.NewConnectionError) or isinstance(inner, e.NewConnectionError):
        text = str(inner)
        text = text[text.index("[Errno"):] if "[Errno" in text else "could not connect"
        return FetchError("connection_error", text[:120])
    if isinstance(exc, e.ReadTimeoutError) or isinstance(inner, e.ReadTimeoutError):
        return FetchError("read_timeout", "read timed out")
    if isinstance(exc, (e.ConnectTimeoutError,)) or isinstance(inner, e.ConnectTimeoutError):
        return FetchError("connection_error", "connect timed out")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return FetchError("read_timeout", "read timed out")
    text = str(inner)
    if "Errno" in text:
        text = text[text.index("[Errno"):].split("'")[0].split(")")[0]
    elif isinstance(exc, e.ProtocolError):
        text = "connection broken"
    else:
        text = type(inner).__name__
    return FetchError("connection_error", text[:120])
