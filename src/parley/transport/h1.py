"""One HTTP/1.1 connection to an upstream: writes a request, parses the reply with httptools.

An `H1Connection` is an asyncio protocol (uvloop calls it), so reading costs no task and no
stream object: httptools calls back into it, the body is kept as a list of chunks, and the one
coroutine using the connection waits on a future only when what it needs is not there yet.

- A reply is whole when httptools says so, or, for a reply with neither `Content-Length` nor
  chunked framing, at EOF. 1xx replies are skipped; a HEAD reply ends with its head.
- The connection may be reused only if the reply said so (`should_keep_alive`: HTTP/1.1 without
  `Connection: close`), was read to its end, and the server has not closed its side since.
- Back-pressure: in stream mode, more than `HIGH_WATER` unread bytes pause the socket until the
  reader takes them.
- Timeouts: one timer per exchange, either a fixed deadline (the whole request) or an idle
  limit (no byte for `idle` seconds, not counted while paused); it fails the exchange with
  `TimeoutError` and closes the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import httptools

HIGH_WATER = 1 << 18  # a stream's unread bytes before the socket stops being read


class ConnectionBroken(Exception):
    """The connection failed or the reply was malformed; `written`/`received` say how far it got."""

    def __init__(self, message: str, written: bool = True, received: bool = True) -> None:
        super().__init__(message)
        self.written = written
        self.received = received


class ReplyTooLarge(Exception):
    """The reply body passed the byte limit set for it."""


class H1Connection(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, key: tuple[str, str, int]) -> None:
        self.loop = loop
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.reusable = True  # False once the server closed, said close, or an exchange was cut
        self.reused = False
        self.idle_since = 0.0
        self.on_lost: Callable[[H1Connection], None] | None = None
        self.active = False  # an exchange is under way
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = self.complete = self.head_only = self.streaming = False
        self.received = self.paused = False
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.limit: int | None = None
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._idle = 0.0  # > 0: the timer is an idle limit; else a fixed deadline
        self._last = 0.0

    # -- the exchange, from the client's side --

    def start(
        self,
        data: bytes,
        body: bytes | None,
        head_only: bool,
        limit: int | None,
        deadline: float | None,
        idle: float,
    ) -> None:
        """Write one request and arm its timer; ConnectionBroken(written=False) if the socket is gone."""
        transport = self.transport
        if transport is None or transport.is_closing() or not self.reusable:
            raise ConnectionBroken("connection closed by the server", written=False, received=False)
        self.active = True
        self.status = 0
        self.headers = []
        self.head_done = self.complete = self.streaming = self.received = self.paused = False
        self.head_only = head_only
        self.chunks = []
        self.buffered = 0
        self.limit = limit
        self.error = None
        loop = self.loop
        if deadline is None:
            self._idle = idle
            self._last = loop.time()
            self._timer = loop.call_at(self._last + idle, self._on_timer)
        else:
            self._idle = 0.0
            self._timer = loop.call_at(deadline, self._on_timer)
        if body:
            if len(body) <= 16384:
                transport.write(data + body)
            else:
                transport.writelines((data, body))
        else:
            transport.write(data)

    async def head(self) -> None:
        """Wait for the reply's status line and headers (1xx replies skipped)."""
        while not self.head_done:
            if self.error is not None:
                raise self.error
            await self._wait()

    async def body(self) -> bytes:
        """Wait for the whole body (raises the exchange's error, if any) and take it."""
        while not self.complete:
            if self.error is not None:
                raise self.error
            await self._wait()
        return self.take()

    async def read_some(self) -> bytes | None:
        """The bytes received since the last read (waits for some), or None at the end."""
        while not self.chunks:
            if self.error is not None:
                raise self.error
            if self.complete:
                return None
            await self._wait()
        return self.take()

    def take(self) -> bytes:
        """Everything buffered, and the socket read again if it was paused for it."""
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        self.buffered = 0
        if self.paused:
            self.paused = False
            self._last = self.loop.time()
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()
        return data

    def set_streaming(self) -> None:
        """Stream mode: no byte limit; the socket pauses when the reader lags."""
        self.streaming = True
        self.limit = None
        if self.buffered > HIGH_WATER:
            self._pause()

    def finish(self) -> None:
        """The exchange is over and its reply read whole: ready for the next request."""
        self.active = False
        self._cancel_timer()
        self.chunks = []
        self.headers = []

    def abort(self) -> None:
        """Close the socket now; the connection is never reused."""
        self.reusable = False
        self.active = False
        self._cancel_timer()
        if self.transport is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: the socket went with it
                self.transport.abort()

    async def _wait(self) -> None:
        waiter = self._waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        """End the exchange with `error` (raised to the reader) and close the socket."""
        if self.error is None and not self.complete:
            self.error = error
        self.abort()
        self._wake()

    def _pause(self) -> None:
        if not self.paused and self.transport is not None and not self.transport.is_closing():
            self.paused = True
            self.transport.pause_reading()

    def _on_timer(self) -> None:
        self._timer = None
        if self._idle:
            now = self.loop.time()
            due = now + self._idle if self.paused else self._last + self._idle
            if due > now:
                self._timer = self.loop.call_at(due, self._on_timer)
                return
        self._fail(TimeoutError())

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.active or self.complete:  # bytes nobody asked for: never reuse this socket
            self.reusable = False
            if not self.active and self.transport is not None:
                self.transport.abort()
            return
        if self._idle:
            self._last = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ConnectionBroken("upstream switched protocols (101)", received=self.received))
        except httptools.HttpParserError as e:
            if self.error is None:  # not a limit our own callback raised
                self._fail(ConnectionBroken(f"invalid HTTP reply: {e}", received=self.received))

    def eof_received(self) -> bool:
        self.reusable = False
        if self.active and not self.complete and self.error is None:
            if self.head_done and self._ends_at_eof():
                self._done()
            else:
                self._fail(ConnectionBroken("server closed the connection", received=self.received))
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if self.active and not self.complete and self.error is None:
            reason = f"connection lost: {exc}" if exc else "server closed the connection"
            self._fail(ConnectionBroken(reason, received=self.received))
        self._cancel_timer()
        if self.on_lost is not None:
            self.on_lost(self)

    def pause_writing(self) -> None:  # a large request body is buffered by the transport
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks --

    def on_message_begin(self) -> None:
        if self.complete:  # bytes after the reply: this socket's framing can no longer be trusted
            self.reusable = False
            raise ConnectionBroken("bytes after the end of the reply")
        self.received = True
        self.headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            return  # 1xx: an interim reply, the real one follows
        self.status = status
        self.head_done = True
        if self.head_only:  # a HEAD reply has no body whatever its headers say
            self.reusable = False  # httptools cannot be told; the socket is not reused
            self._done()
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self.chunks.append(body)
        self.buffered += len(body)
        limit = self.limit
        if limit is not None and self.buffered > limit:
            self._fail(ReplyTooLarge())
            raise ReplyTooLarge()  # stop httptools mid-buffer
        if self.streaming:
            if self.buffered > HIGH_WATER:
                self._pause()
            self._wake()

    def on_message_complete(self) -> None:
        if self.status == 0 or self.complete:
            return  # the end of a 1xx reply, or a HEAD reply's ignored body
        if not self.parser.should_keep_alive():
            self.reusable = False
        self._done()

    def _done(self) -> None:
        self.complete = True
        self._cancel_timer()
        self._wake()

    def _ends_at_eof(self) -> bool:
        """A reply framed by the connection's end: no Content-Length, not chunked."""
        for name, value in self.headers:
            lower = name.lower()
            if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
                return False
        return True
