"""Keep-alive connections per (scheme, host, port), and opening new ones.

Idle connections are kept newest first and closed after `keepalive` seconds unused (one timer for
the whole pool, set for the oldest). A connection the server has closed (FIN or reset seen while
idle) is dropped as soon as the loop notices, and skipped if taken before that. Host names are
resolved once per `dns_ttl` seconds (addresses tried in order); https uses the default SSL
context (the system's CAs, `SSL_CERT_FILE`/`SSL_CERT_DIR` honoured), created once off the loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from dataclasses import dataclass

from parley.transport.h1 import H1Connection

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Origin:
    """Where requests go: the pool key, the address to connect to and the Host header to send."""

    key: tuple[str, str, int]
    host: str  # for connecting and SNI: no brackets, IDNA-encoded
    port: int
    tls: bool
    host_header: str  # host[:port], IPv6 literals in brackets, default ports left out
    is_ip: bool


def parse_origin(scheme: str, authority: str) -> Origin:
    """The origin of `scheme://authority` (userinfo is not supported: ValueError)."""
    scheme = scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"unsupported URL scheme {scheme!r}")
    if "@" in authority:
        raise ValueError("credentials in the URL are not supported")
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise ValueError(f"invalid IPv6 address in {authority!r}")
        host, rest = authority[1:end], authority[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"invalid host {authority!r}")
    else:
        host, _, port_text = authority.partition(":")
    if not host:
        raise ValueError("URL has no host")
    if (port_text and not port_text.isdigit()) or (port_text and not 0 < int(port_text) < 65536):
        raise ValueError(f"invalid port in {authority!r}")
    port = int(port_text) if port_text else DEFAULT_PORTS[scheme]
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    host = host.lower()
    try:
        is_ip = bool(ipaddress.ip_address(host))
    except ValueError:
        is_ip = False
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == DEFAULT_PORTS[scheme] else f"{shown}:{port}"
    return Origin((scheme, host, port), host, port, scheme == "https", host_header, is_ip)


class ConnectFailed(Exception):
    """No connection could be opened (the message says to where and why)."""


class Pool:
    """Idle keep-alive connections by origin, and every open connection (closed by `close`)."""

    def __init__(self, keepalive: float = 60.0, dns_ttl: float = 300.0) -> None:
        self.keepalive = keepalive
        self.dns_ttl = dns_ttl
        self._idle: dict[tuple[str, str, int], list[H1Connection]] = {}
        self._open: set[H1Connection] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_loop: asyncio.AbstractEventLoop | None = None
        self._dns: dict[tuple[str, int], tuple[float, list[tuple[int, str]]]] = {}
        self._ssl: ssl.SSLContext | None = None

    def take(self, key: tuple[str, str, int], loop: asyncio.AbstractEventLoop) -> H1Connection | None:
        """The newest idle connection to `key` that is still usable, or None."""
        stack = self._idle.get(key)
        while stack:
            conn = stack.pop()
            if conn.reusable and conn.loop is loop and loop.time() - conn.idle_since < self.keepalive:
                conn.reused = True
                return conn
            conn.abort()
        return None

    def put(self, conn: H1Connection) -> None:
        """Back to the pool after a reply read whole, if the connection may be reused."""
        conn.finish()
        if not conn.reusable:
            conn.abort()
            return
        conn.idle_since = now = conn.loop.time()
        stack = self._idle.get(conn.key)
        if stack is None:
            stack = self._idle[conn.key] = []
        stack.append(conn)
        if self._sweep is None or self._sweep_loop is not conn.loop:  # (a new loop: a new timer)
            self._sweep_loop = conn.loop
            self._sweep = conn.loop.call_at(now + self.keepalive, self._expire, conn.loop)

    async def connect(self, origin: Origin, timeout: float) -> H1Connection:
        """A new connection to `origin`; TimeoutError past `timeout`, ConnectFailed otherwise."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            context = await self._context() if origin.tls else None
            addresses = await self._resolve(loop, origin)
            errors: list[str] = []
            for family, address in addresses:
                conn = H1Connection(loop, origin.key)
                try:
                    await loop.create_connection(
                        lambda conn=conn: conn,
                        address,
                        origin.port,
                        family=family,
                        ssl=context,
                        server_hostname=origin.host if context is not None else None,
                    )
                except ssl.SSLError as e:  # a TLS failure is the server's answer: no other address
                    reason = getattr(e, "verify_message", None) or e.reason or str(e)
                    raise ConnectFailed(_where(origin, f"TLS: {reason}")) from None
                except OSError as e:
                    errors.append(e.strerror or str(e))
                    continue
                conn.on_lost = self._open.discard
                self._open.add(conn)
                return conn
        raise ConnectFailed(_where(origin, "; ".join(dict.fromkeys(errors)) or "no address"))

    def close(self) -> None:
        """Close every connection, idle or in use (the pool stays usable)."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._idle.clear()
        for conn in list(self._open):
            conn.abort()
        self._open.clear()

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close connections idle for `keepalive` seconds; come back for the next one due."""
        self._sweep = None
        oldest: float | None = None
        now = loop.time()
        for key, stack in list(self._idle.items()):
            keep = []
            for conn in stack:
                if conn.reusable and conn.loop is loop and now - conn.idle_since < self.keepalive:
                    keep.append(conn)
                    oldest = conn.idle_since if oldest is None else min(oldest, conn.idle_since)
                else:
                    conn.abort()
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        if oldest is not None:
            self._sweep = loop.call_at(oldest + self.keepalive, self._expire, loop)

    async def _resolve(self, loop: asyncio.AbstractEventLoop, origin: Origin) -> list[tuple[int, str]]:
        if origin.is_ip:
            return [(socket.AF_INET6 if ":" in origin.host else socket.AF_INET, origin.host)]
        key = (origin.host, origin.port)
        cached = self._dns.get(key)
        if cached is not None and cached[0] > loop.time():
            return cached[1]
        try:
            infos = await loop.getaddrinfo(origin.host, origin.port, type=socket.SOCK_STREAM)
        except OSError as e:
            raise ConnectFailed(_where(origin, f"cannot resolve the host name ({e.strerror or e})")) from None
        addresses: list[tuple[int, str]] = list(dict.fromkeys((int(i[0]), str(i[4][0])) for i in infos))
        if len(self._dns) > 1024:
            self._dns.clear()
        self._dns[key] = (loop.time() + self.dns_ttl, addresses)
        return addresses

    async def _context(self) -> ssl.SSLContext:
        """The default client context, made once in a thread (loading CAs reads files)."""
        if self._ssl is None:
            self._ssl = await asyncio.to_thread(_default_context)
        return self._ssl


def _default_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


def _where(origin: Origin, reason: str) -> str:
    scheme = "https" if origin.tls else "http"
    return f"cannot connect to {scheme}://{origin.host_header}: {reason}"
