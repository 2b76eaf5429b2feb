"""Pooled upstream HTTP on aiohttp: one session per gateway, keep-alive connections per host."""

from __future__ import annotations

import aiohttp
import yarl

from parley.core.errors import GatewayError
from parley.core.observe import OUTBOUND_HEADERS
from parley.core.stream import UpstreamReply

# Never forwarded in either direction.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
        "host",
    }
)

# Streamed reply bodies: SSE, JSON lines, and AWS event streams (application/vnd.amazon.eventstream).
_STREAM_TYPES = ("event-stream", "jsonl", "ndjson", "amazon.eventstream")


class StreamSource:
    """Reads an aiohttp response body chunk by chunk as it arrives."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def next_chunk(self) -> bytes | None:
        try:
            chunk = await self._response.content.readany()
        except (TimeoutError, aiohttp.ClientError) as e:
            raise UpstreamBroken(str(e) or type(e).__name__) from e
        return chunk or None

    at_boundary = False  # raw bytes of unknown framing: the relay never pings into them

    @property
    def at_eof(self) -> bool:
        """True once the body has ended and every byte was returned: the last chunk is in hand."""
        return self._response.content.at_eof()

    def close(self) -> None:
        self._response.close()


class UpstreamBroken(Exception):
    """The upstream connection failed after the reply had started."""


class HttpClient:
    def __init__(self, connect_timeout: float = 10.0, max_response_bytes: int = 64 * 1024 * 1024) -> None:
        self._session: aiohttp.ClientSession | None = None
        self.connect_timeout = connect_timeout
        self.max_response_bytes = max_response_bytes  # a reply read whole; larger is a 502

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

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
        url: str | yarl.URL,
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
        connect = float(connect_timeout) if connect_timeout else self.connect_timeout
        client_timeout = aiohttp.ClientTimeout(
            total=None if stream else timeout,
            sock_connect=min(connect, timeout),
            sock_read=timeout,
        )
        try:
            response = await self.session.request(
                method, url, data=body, headers=headers, timeout=client_timeout, allow_redirects=False
            )
        except TimeoutError:
            raise GatewayError(504, f"upstream timed out after {timeout:g}s", "timeout_error") from None
        except aiohttp.ClientError as e:
            raise GatewayError(502, f"upstream unreachable: {e}", "api_error") from None
        reply_headers = {k.lower(): v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP}
        content_type = reply_headers.get("content-type", "")
        if stream and response.status < 300 and any(kind in content_type for kind in _STREAM_TYPES):
            return UpstreamReply(response.status, reply_headers, source=StreamSource(response))
        try:
            data = await self._read_whole(response)
        except TimeoutError:
            response.close()
            raise GatewayError(504, f"upstream timed out after {timeout:g}s", "timeout_error") from None
        except aiohttp.ClientError as e:
            response.close()
            raise GatewayError(502, f"upstream connection failed: {e}", "api_error") from None
        finally:
            response.release()
        return UpstreamReply(response.status, reply_headers, body=data)

    async def _read_whole(self, response: aiohttp.ClientResponse) -> bytes:
        """The reply body, refused (502) past `max_response_bytes`: declared or counted as it comes."""
        limit = self.max_response_bytes
        declared = response.content_length
        if declared is not None and declared <= limit and "content-encoding" not in response.headers:
            return await response.read()
        if declared is not None and declared > limit:
            response.close()
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:
                response.close()
                raise _too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        502,
        f"upstream reply larger than {limit / 1048576:g} MiB (general_settings.max_response_size_mb)",
        "api_error",
    )
