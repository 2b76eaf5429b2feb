"""Pooled upstream HTTP on aiohttp: one session per gateway, keep-alive connections per host."""

from __future__ import annotations

import aiohttp

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
    def __init__(self, connect_timeout: float = 10.0) -> None:
        self._session: aiohttp.ClientSession | None = None
        self.connect_timeout = connect_timeout

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
        if (
            stream
            and response.status < 300
            and ("event-stream" in content_type or "jsonl" in content_type or "ndjson" in content_type)
        ):
            return UpstreamReply(response.status, reply_headers, source=StreamSource(response))
        try:
            data = await response.read()
        except TimeoutError:
            response.close()
            raise GatewayError(504, f"upstream timed out after {timeout:g}s", "timeout_error") from None
        except aiohttp.ClientError as e:
            response.close()
            raise GatewayError(502, f"upstream connection failed: {e}", "api_error") from None
        finally:
            response.release()
        return UpstreamReply(response.status, reply_headers, body=data)
