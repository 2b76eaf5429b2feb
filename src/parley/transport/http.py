"""Upstream HTTP/1.1 for every provider: keep-alive pooled, on asyncio protocols and httptools.

`HttpClient.send` writes one request on a pooled connection (`pool.py`), parses the reply as it
arrives (`h1.py`) and returns it whole, or, for a 2xx streamed reply, as a `StreamSource` that
yields bytes as they come. Request heads and reply headers are built in `wire.py`.

Timeouts (seconds): connecting `min(connect_timeout, timeout)`; a request that is not a stream
must be answered whole within `timeout`; a stream may go `timeout` without a byte. Failures are
`GatewayError`s: 504 for a timeout, 502 for an unreachable upstream, a broken reply or one larger
than `max_response_bytes` (counted after decompression). A request whose pooled connection turns
out to be dead is sent again once on a new one, only if nothing was written yet, or it is
replayable (GET, HEAD, OPTIONS, TRACE, or an Idempotency-Key) and no reply byte came back.
"""

from __future__ import annotations

import asyncio
import zlib

from parley.core.errors import GatewayError
from parley.core.observe import OUTBOUND_HEADERS
from parley.core.stream import UpstreamReply
from parley.transport.h1 import ConnectionBroken, H1Connection, ReplyTooLarge
from parley.transport.pool import ConnectFailed, Origin, Pool
from parley.transport.wire import HOP_BY_HOP, Decoder, HeaderRefused, Wire, decode_whole

__all__ = ["HOP_BY_HOP", "HttpClient", "StreamSource", "UpstreamBroken"]

# Streamed reply bodies: SSE, JSON lines, and AWS event streams (application/vnd.amazon.eventstream).
_STREAM_TYPES = ("event-stream", "jsonl", "ndjson", "amazon.eventstream")


class UpstreamBroken(Exception):
    """The upstream connection failed after the reply had started."""


class StreamSource:
    """A reply body read as it arrives; the connection goes back to the pool once it is all read,
    and is closed if the stream is given up before its end."""

    __slots__ = ("_conn", "_decoder", "_eof", "_pool", "_timeout")

    at_boundary = False  # raw bytes of unknown framing: the relay never pings into them

    def __init__(self, conn: H1Connection, pool: Pool, decoder: Decoder | None, timeout: float) -> None:
        self._conn: H1Connection | None = conn
        self._pool = pool
        self._decoder = decoder
        self._timeout = timeout
        self._eof = False

    async def next_chunk(self) -> bytes | None:
        conn = self._conn
        if conn is None:
            return None
        try:
            data = await conn.read_some()
        except TimeoutError:
            self.close()
            raise UpstreamBroken(f"no data from upstream for {self._timeout:g}s") from None
        except ConnectionBroken as e:
            self.close()
            raise UpstreamBroken(str(e)) from None
        ended = conn.complete and not conn.chunks
        decoder = self._decoder
        if decoder is not None:
            try:
                data = (decoder.feed(data) if data is not None else b"") + (decoder.flush() if ended else b"")
            except zlib.error as e:
                self.close()
                raise UpstreamBroken(f"corrupt {decoder.encoding} body: {e}") from None
        if ended:
            self._eof = True
            self._conn = None
            self._pool.put(conn)
        return data or None if ended else data

    @property
    def at_eof(self) -> bool:
        """True once the body has ended and every byte was returned: the last chunk is in hand."""
        return self._eof

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.complete:  # all received, some unread: the connection is still good
            self._pool.put(conn)
        else:
            conn.abort()


class HttpClient:
    def __init__(
        self,
        connect_timeout: float = 10.0,
        max_response_bytes: int = 64 * 1024 * 1024,
        keepalive: float = 60.0,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.max_response_bytes = max_response_bytes  # a reply read whole; larger is a 502
        self.pool = Pool(keepalive)  # idle connections are closed after `keepalive` seconds
        self.wire = Wire()

    async def close(self) -> None:
        self.pool.close()

    async def send_call(self, call, headers: dict[str, str]) -> UpstreamReply:
        """Send an UpstreamCall to its deployment's api_base with the given headers."""
        dep = call.target.deployment
        headers.update(dep.extra_headers)
        url = dep.api_base + call.path + (("?" + call.query) if call.query else "")
        return await self.send(
            call.method, url, headers, call.body, dep.timeout, call.stream, dep.params.get("connect_timeout")
        )

    async def send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        timeout: float,
        stream: bool,
        connect_timeout: float | None = None,
    ) -> UpstreamReply:
        """Send one request. A 2xx streamed reply comes back as a source; anything else is read whole."""
        outbound = OUTBOUND_HEADERS.get()
        if outbound:  # the trace context of the attempt being made
            headers.update(outbound)
        try:
            origin, target = self.wire.route(str(url))
            data, replayable = self.wire.head(method, target, origin, headers, body)
        except HeaderRefused as e:
            raise GatewayError(502, str(e), "api_error") from None
        except ValueError as e:
            raise GatewayError(502, f"upstream unreachable: invalid URL {url!r}: {e}", "api_error") from None
        loop = asyncio.get_running_loop()
        deadline = None if stream else loop.time() + timeout
        connect = min(float(connect_timeout) if connect_timeout else self.connect_timeout, timeout)
        try:
            conn = await self._exchange(
                loop, origin, data, body, method == "HEAD", replayable, deadline, timeout, connect
            )
        except TimeoutError:
            raise GatewayError(504, f"upstream timed out after {timeout:g}s", "timeout_error") from None
        except (ConnectFailed, ConnectionBroken) as e:
            raise GatewayError(502, f"upstream unreachable: {e}", "api_error") from None
        except ReplyTooLarge:
            raise _too_large(self.max_response_bytes) from None
        reply_headers, length, encoding = self.wire.reply_headers(conn.headers)
        status = conn.status
        if (
            stream
            and status < 300
            and any(kind in reply_headers.get("content-type", "") for kind in _STREAM_TYPES)
        ):
            conn.set_streaming()
            decoder = Decoder(encoding) if encoding else None
            return UpstreamReply(
                status, reply_headers, source=StreamSource(conn, self.pool, decoder, timeout)
            )
        return UpstreamReply(
            status, reply_headers, body=await self._read_whole(conn, length, encoding, timeout)
        )

    async def _exchange(
        self,
        loop: asyncio.AbstractEventLoop,
        origin: Origin,
        data: bytes,
        body: bytes | None,
        head_only: bool,
        replayable: bool,
        deadline: float | None,
        timeout: float,
        connect: float,
    ) -> H1Connection:
        """Write the request and wait for the reply's head; the connection it came on."""
        pool = self.pool
        conn = pool.take(origin.key, loop)
        while True:
            fresh = conn is None
            if conn is None:
                if deadline is not None:
                    connect = min(connect, max(0.0, deadline - loop.time()))
                conn = await pool.connect(origin, connect)
            try:
                conn.start(data, body, head_only, self.max_response_bytes, deadline, timeout)
                await conn.head()
                return conn
            except ConnectionBroken as e:
                conn.abort()
                if fresh or (e.written and (e.received or not replayable)):
                    raise
                conn = None  # a pooled connection the server had closed: once more, on a new one
            except BaseException:  # a timeout, or cancelled (the client left): never reused
                conn.abort()
                raise

    async def _read_whole(
        self, conn: H1Connection, length: str | None, encoding: str | None, timeout: float
    ) -> bytes:
        """The reply body, refused (502) past `max_response_bytes`: declared, counted or decompressed."""
        limit = self.max_response_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            conn.abort()
            raise _too_large(limit)
        try:
            data = await conn.body()
        except TimeoutError:
            conn.abort()
            raise GatewayError(504, f"upstream timed out after {timeout:g}s", "timeout_error") from None
        except ReplyTooLarge:
            conn.abort()
            raise _too_large(limit) from None
        except ConnectionBroken as e:
            conn.abort()
            raise GatewayError(502, f"upstream connection failed: {e}", "api_error") from None
        except BaseException:
            conn.abort()
            raise
        self.pool.put(conn)
        if encoding is None:
            return data
        try:
            return decode_whole(data, encoding, limit)
        except ReplyTooLarge:
            raise _too_large(limit) from None
        except zlib.error as e:
            raise GatewayError(
                502, f"upstream connection failed: corrupt {encoding} body: {e}", "api_error"
            ) from None


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        502,
        f"upstream reply larger than {limit / 1048576:g} MiB (general_settings.max_response_size_mb)",
        "api_error",
    )
