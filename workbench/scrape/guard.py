"""The SSRF guard: which URLs and addresses a download may reach.

Loopback, private, link-local, multicast, reserved, unspecified and other non-public
addresses (IPv4-mapped IPv6 included) and non-http(s) schemes are refused, except origins
listed as allowed (the workbench's own loopback stub). The address check runs where the
socket is opened (:meth:`AddressGuard.connect`), on every address the name resolves to,
and the socket connects to a checked address, so DNS answers that change between check
and use cannot slip through.
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit


class FetchError(Exception):
    """A GET that did not produce a usable response; ``reason`` is one word."""

    def __init__(self, reason: str, detail: str = "", *, status: int | None = None,
                 body: bytes = b"", headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail, self.status = reason, detail, status
        self.body, self.headers = body, dict(headers or {})
        self.retry_after_capped: float | None = None  # a Retry-After ask cut to the cap, if any


def _blocked_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address may not be fetched from, or None."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for attr, what in (("is_loopback", "loopback"), ("is_link_local", "link-local"),
                       ("is_unspecified", "unspecified"), ("is_multicast", "multicast"),
                       ("is_reserved", "reserved"), ("is_private", "private")):
        if getattr(ip, attr):
            return f"{what} address {ip}"
    if not ip.is_global:
        return f"non-public address {ip}"
    return None


class AddressGuard:
    """Refuses URLs that point inside the machine or its network (see module docstring).

    Args:
        allow: origins (``"http://127.0.0.1:8765"``) or ``(host, port)`` pairs that are
            reachable anyway — the workbench's own stub.
        enabled: ``False`` turns the address check off (the scheme check stays).
    """

    def __init__(self, allow: Iterable[str | tuple[str, int]] = (), enabled: bool = True) -> None:
        self.enabled = enabled
        self._allow: set[tuple[str, int]] = set()
        for a in allow:
            self.allow(a)

    def allow(self, origin: str | tuple[str, int]) -> None:
        """Let ``origin`` through (exact host and port)."""
        if isinstance(origin, tuple):
            self._allow.add((origin[0].lower(), int(origin[1])))
            return
        p = urlsplit(origin)
        self._allow.add(((p.hostname or "").lower(), p.port or (443 if p.scheme == "https" else 80)))

    def allowed_origin(self, host: str, port: int) -> bool:
        return (host.lower().strip("[]"), int(port)) in self._allow

    def check_url(self, url: str) -> None:
        """Scheme and literal-address check before anything is sent; raises :class:`FetchError`."""
        p = urlsplit(url)
        if p.scheme not in ("http", "https"):
            raise FetchError("blocked_url", f"scheme {p.scheme or '(none)'!r} is not allowed (only http, https)")
        if not p.hostname:
            raise FetchError("blocked_url", "no host in the URL")
        try:
            port = p.port or (443 if p.scheme == "https" else 80)
        except ValueError:
            raise FetchError("blocked_url", "the port is not a number") from None
        if not self.enabled or self.allowed_origin(p.hostname, port):
            return
        try:
            ip = ipaddress.ip_address(p.hostname.strip("[]"))
        except ValueError:
            return  # a name: checked on every address it resolves to, at connect time
        why = _blocked_ip(ip)
        if why:
            raise FetchError("blocked_address", f"{p.hostname}: {why}")

    def connect(self, host: str, port: int, timeout: float | None,
                source_address: Any = None, socket_options: Any = None) -> socket.socket:
        """Resolve, check every address, connect to a checked one (the rebinding-safe step)."""
        try:
            infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise FetchError("connection_error", f"cannot resolve {host!r} ({exc.strerror})") from None
        bypass = not self.enabled or self.allowed_origin(host, port)
        last: OSError | None = None
        for family, stype, proto, _, addr in infos:
            if not bypass:
                why = _blocked_ip(ipaddress.ip_address(addr[0]))
                if why:
                    raise FetchError("blocked_address", f"{host} resolves to a {why}")
            sock = socket.socket(family, stype, proto)
            try:
                for opt in socket_options or ():
                    sock.setsockopt(*opt)
                sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(addr)
                return sock
            except OSError as exc:
                last = exc
                sock.close()
        raise last or OSError(f"no address for {host}")


