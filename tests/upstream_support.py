"""A scripted HTTP/1.1 server on loopback for the upstream client's tests: every answer is raw bytes
written by the test, so framing, timing and closing are exactly what a test needs."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import uvloop

from parley.core.errors import GatewayError


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    """Run a test's coroutine function on asyncio's own loop, then on uvloop."""

    def go(main):
        return uvloop.run(main()) if request.param == "uvloop" else asyncio.run(main())

    return go


async def failure(coro) -> GatewayError:
    """The GatewayError `coro` raises."""
    with pytest.raises(GatewayError) as info:
        await coro
    return info.value


@dataclass
class Seen:
    """One request as the server read it."""

    method: str
    target: str
    headers: dict[str, str]  # lower-case names; a repeated header keeps every value, comma-joined
    names: list[str]  # header names as sent, in order
    body: bytes
    conn: int  # which connection it came on (1, 2, ...)
    index: int  # its place on that connection (1, 2, ...)


@dataclass
class Conn:
    number: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    closed_by_client: asyncio.Event = field(default_factory=asyncio.Event)


# An answer writes the reply (or not) and returns True to keep reading requests on the connection.
Answer = Callable[[Seen, Conn], Awaitable[bool]]


def reply(body: bytes = b"ok", status: str = "200 OK", headers: str = "", version: str = "HTTP/1.1") -> bytes:
    head = f"{version} {status}\r\nContent-Length: {len(body)}\r\n"
    head += f"Content-Type: application/json\r\n{headers}\r\n"
    return head.encode() + body


def chunked(pieces: list[bytes]) -> list[bytes]:
    return [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces] + [b"0\r\n\r\n"]


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data)


async def ok(seen: Seen, conn: Conn) -> bool:
    conn.writer.write(reply(b"ok:" + seen.target.encode()))
    return True


def private_loopback() -> str:
    """A random address in 127.0.0.0/8 other than 127.0.0.1 (Linux routes all of it to lo)."""
    return f"127.{random.randrange(1, 255)}.{random.randrange(256)}.{random.randrange(1, 255)}"


class RawServer:
    """Serves `answer` for every request; counts connections and records requests.

    By default it listens on an address of its own in 127.0.0.0/8 (`private_loopback`), not on
    127.0.0.1: another process of the suite still dialing a port it used earlier (a gateway
    retrying its stopped Redis every few seconds) would otherwise land on a server handed the same
    port number, and be counted as one of the client's connections."""

    def __init__(
        self, answer: Answer = ok, host: str | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        self.answer = answer
        self.host = host or private_loopback()
        self.tls = tls
        self.conns: list[Conn] = []
        self.seen: list[Seen] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def connections(self) -> int:
        return len(self.conns)

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, self.host, 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for conn in self.conns:
            conn.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn(len(self.conns) + 1, reader, writer)
        self.conns.append(conn)
        index = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    conn.closed_by_client.set()
                    return
                index += 1
                seen = _parse(head, conn.number, index)
                length = int(seen.headers.get("content-length", "0"))
                seen.body = await reader.readexactly(length) if length else b""
                self.seen.append(seen)
                if not await self.answer(seen, conn):
                    return
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            conn.closed_by_client.set()
        finally:
            with contextlib.suppress(Exception):
                writer.close()


def _parse(head: bytes, conn: int, index: int) -> Seen:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    names = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        names.append(name)
        key = name.lower()
        headers[key] = headers[key] + "," + value.strip() if key in headers else value.strip()
    return Seen(method, target, headers, names, b"", conn, index)


async def hang(seen: Seen, conn: Conn) -> bool:
    """Never answer; notice when the client gives up and closes."""
    await wait_closed(conn)
    return False


async def wait_closed(conn: Conn) -> None:
    """Read (and drop) until the client closes the connection."""
    with contextlib.suppress(ConnectionError):
        while await conn.reader.read(65536):
            pass
    conn.closed_by_client.set()


async def closed_within(conn: Conn, seconds: float) -> bool:
    """True if the client closed `conn` within `seconds` (the server notices it on its next read)."""
    try:
        await asyncio.wait_for(conn.closed_by_client.wait(), seconds)
    except TimeoutError:
        return False
    return True
