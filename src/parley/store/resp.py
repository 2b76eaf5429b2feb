"""A lean Redis connection for the request path's script calls: one socket, commands pipelined.

redis-py spends ~85-140 µs of CPU per call here (a pooled connection checked out and back, an
encoder and a reader per command); the admission and settle calls need none of that. This
connection writes the commands made in one turn of the event loop together (one system call
for all of them) and matches replies to callers in order (Redis answers a connection's commands
in the order sent), so concurrent requests share it without a pool. A caller that gives up (a
timeout) leaves its slot: the late reply is read and dropped. Used for `redis://` and `unix://`
URLs (with a password, user or database); anything else (TLS, options in the query) keeps
redis-py (`lean_params` says None). It needs nothing of redis-py (imported only when the link
first uses redis-py's client).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from parley.store.deadline import STRETCH, extended


class ReplyError(Exception):
    """An error reply from Redis (NOSCRIPT, a script that failed, WRONGPASS ...)."""


def lean_params(url: str) -> dict[str, Any] | None:
    """Where and how to connect (host and port, or a unix socket path; username, password, db),
    or None when this connection leaves the URL to redis-py (TLS, any query option)."""
    try:
        u = urlsplit(url)
        if u.query or u.fragment or u.scheme not in ("redis", "unix"):
            return None
        params: dict[str, Any] = {}
        if u.username:
            params["username"] = unquote(u.username)
        if u.password:
            params["password"] = unquote(u.password)
        if u.scheme == "unix":
            params["path"] = unquote(u.path)
            return params
        params["host"] = u.hostname or "localhost"
        params["port"] = u.port or 6379
        db = u.path.strip("/")
        params["db"] = int(db) if db else 0
    except ValueError:  # a port or database that is not a number: redis-py says what is wrong
        return None
    return params


def pack(args: Sequence[str | bytes | int | float]) -> bytes:
    """One command in RESP (ints and floats as repr, like redis-py; bytes as they are)."""
    try:
        strs = [a if type(a) is str else a.decode() if type(a) is bytes else repr(a) for a in args]
    except UnicodeDecodeError:  # bytes that are not text (a cached value): sent as they are
        return _pack_bytes(args)
    body = "".join([f"${len(s)}\r\n{s}\r\n" for s in strs])
    if body.isascii():  # (then len() counted bytes)
        return f"*{len(strs)}\r\n{body}".encode()
    return _pack_bytes(strs)


def _pack_bytes(args: Sequence[str | bytes | int | float]) -> bytes:
    chunks = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if type(a) is bytes else (a if type(a) is str else repr(a)).encode()
        chunks.append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(chunks)


def _parse(buf: bytes, pos: int) -> tuple[Any, int] | None:
    """One reply from `buf` at `pos`: (value, where the next starts), None if not all there yet.
    Bulk strings are bytes, integers int, nil None, arrays lists, errors ReplyError."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind, line, pos = buf[pos], buf[pos + 1 : end], end + 2
    if kind == 0x3A:  # ':'
        return int(line), pos
    if kind == 0x24:  # '$'
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            return None
        return buf[pos : pos + n], pos + n + 2
    if kind == 0x2A:  # '*'
        n = int(line)
        if n < 0:
            return None, pos
        items = []
        for _ in range(n):
            got = _parse(buf, pos)
            if got is None:
                return None
            item, pos = got
            items.append(item)
        return items, pos
    if kind == 0x2B:  # '+'
        return line, pos
    if kind == 0x2D:  # '-'
        return ReplyError(line.decode("utf-8", "replace")), pos
    raise ConnectionError(f"unexpected reply from Redis: {buf[pos - 2 : pos + 30]!r}")


class _Waiter:
    """A caller waiting for its reply: by `deadline`, or later while the loop runs late."""

    __slots__ = ("deadline", "future", "limit", "timeout")

    def __init__(self, future: asyncio.Future[Any], deadline: float, timeout: float) -> None:
        self.future, self.deadline, self.timeout = future, deadline, timeout
        self.limit = deadline + timeout * (STRETCH - 1)


class RespConnection(asyncio.Protocol):
    def __init__(self) -> None:
        # callers waiting for a reply, in the order their commands were sent, each with its deadline
        self._waiters: deque[_Waiter] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._buffer = b""
        self._transport: Any = None  # (uvloop's transports are not asyncio.Transport subclasses)
        self._outgoing: list[bytes] = []  # commands made in this turn of the loop, written at its end
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buf = self._buffer + data if self._buffer else data
        pos = 0
        try:
            while pos < len(buf):
                got = _parse(buf, pos)
                if got is None:
                    break
                value, pos = got
                waiter = self._waiters.popleft().future
                if not waiter.done():  # (a caller that timed out left its slot)
                    waiter.set_result(value)
        except (ConnectionError, ValueError, IndexError) as e:  # out of step: start over
            self._fail(ConnectionError(f"bad reply from Redis: {e}"))
            return
        self._buffer = buf[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def _fail(self, error: Exception) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiters:
            waiter = self._waiters.popleft().future
            if not waiter.done():
                waiter.set_exception(error)
        if self._transport is not None:
            self._transport.close()

    def send(self, args: Sequence[str | bytes | int | float], deadline: float) -> asyncio.Future[Any]:
        """The reply to one command (a ReplyError value for an error reply); TimeoutError if
        none came by `deadline` (the loop's clock). One timer serves every caller."""
        if self.closed or self._transport is None:
            raise ConnectionError("connection to Redis closed")
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.append(_Waiter(waiter, deadline, deadline - loop.time()))
        if self._timer is None or deadline < self._timer.when():
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(deadline, self._expire)
        if not self._outgoing:  # the first this turn: one write for all of them, once it is over
            loop.call_soon(self._write)
        self._outgoing.append(pack(args))
        return waiter

    def _expire(self) -> None:
        """Fail the callers whose deadline passed (their replies, if they come, are dropped).
        A timer that ran late (the loop was blocked: the command may even have been written
        late) gives them more time, as `parley.store.deadline.within` does."""
        assert self._timer is not None
        due = self._timer.when()
        self._timer = None
        loop = asyncio.get_running_loop()
        now, soonest = loop.time(), None
        for w in self._waiters:
            if w.future.done():
                continue
            if w.deadline <= now:
                later = extended(due, now, w.timeout, w.limit)
                if later is None:
                    w.future.set_exception(TimeoutError("no reply from Redis in time"))
                    continue
                w.deadline = later
            if soonest is None or w.deadline < soonest:
                soonest = w.deadline
        if soonest is not None:
            self._timer = loop.call_at(soonest, self._expire)

    def _write(self) -> None:
        data, self._outgoing = b"".join(self._outgoing), []
        if not self.closed:
            self._transport.write(data)

    async def call(self, *args: str | bytes | int | float, timeout: float = 5.0) -> Any:
        """The reply; an error reply raised."""
        reply = await self.send(args, asyncio.get_running_loop().time() + timeout)
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    def close(self) -> None:
        self._fail(ConnectionError("connection to Redis closed"))


async def connect(params: dict[str, Any]) -> RespConnection:
    """A connection, authenticated and on its database (callers bound the time it takes)."""
    loop = asyncio.get_running_loop()
    if "path" in params:
        _, conn = await loop.create_unix_connection(RespConnection, params["path"])
    else:
        _, conn = await loop.create_connection(
            RespConnection, params.get("host", "localhost"), int(params.get("port", 6379))
        )
    try:
        if params.get("password"):
            user = params.get("username")
            await conn.call("AUTH", *([user] if user else []), params["password"])
        if params.get("db"):
            await conn.call("SELECT", int(params["db"]))
    except BaseException:
        with contextlib.suppress(Exception):
            conn.close()
        raise
    return conn
