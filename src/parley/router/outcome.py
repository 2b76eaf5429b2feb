"""How an attempt ended, and what the router should do about it.

Kinds: "ok" (hand it to the client), "retry" (connection error, timeout, 408/409/429/5xx/529, or an
error event before the first byte of a stream), "context_window" and "content_policy" (errors that
only a fallback model group can fix), "fatal" (any other client error: returned as it is).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import orjson

from parley.core.stream import ChunkSource, UpstreamReply, WrappedSource
from parley.transport.http import UpstreamBroken

RETRY_STATUSES = frozenset({408, 409, 429})

_CONTEXT_WINDOW = (
    "prompt is too long",
    "context length",
    "context_length_exceeded",
    "context window",
    "maximum context",
    "exceed context limit",
    "too many tokens",
    "input is too long",
    "model_context_window_exceeded",
)
_CONTENT_POLICY = (
    "content_policy",
    "content policy",
    "content_filter",
    "content management policy",
    "safety system",
    "responsibleaipolicyviolation",
)

_STREAM_ERROR_STATUS = {
    "overloaded_error": 529,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
}


def classify(status: int, body: bytes | None, headers: Mapping[str, str]) -> str:
    if status < 400:
        return "ok"
    if headers.get("x-should-retry") == "false":
        return "fatal"
    if status in RETRY_STATUSES or status >= 500:
        return "retry"
    text = (body or b"")[:4000].decode("utf-8", "replace").lower()
    if status in (400, 413, 422) and any(p in text for p in _CONTEXT_WINDOW):
        return "context_window"
    if status in (400, 403, 422) and any(p in text for p in _CONTENT_POLICY):
        return "content_policy"
    return "fatal"


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the upstream asked us to wait: retry-after-ms, then retry-after (seconds or a date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class ReplaySource(WrappedSource):
    """A stream whose first chunk was read ahead by the router: replays it, then reads on."""

    __slots__ = ("_first",)

    def __init__(self, first: bytes, inner: ChunkSource) -> None:
        super().__init__(inner)
        self._first: bytes | None = first

    @property
    def at_boundary(self) -> bool:
        return self._first is None and self.inner.at_boundary

    @property
    def at_eof(self) -> bool:
        return self._first is None and self.inner.at_eof

    @property
    def ready(self) -> bool:
        return self._first is not None or getattr(self.inner, "ready", False)

    async def next_chunk(self) -> bytes | None:
        if self._first is not None:
            chunk, self._first = self._first, None
            return chunk
        return await self.inner.next_chunk()


class StreamFailed(Exception):
    """A stream failed before its first byte could reach the client."""

    def __init__(self, status: int, message: str, body: bytes | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body


async def peek(reply: UpstreamReply) -> UpstreamReply:
    """Read the first chunk of a streamed reply; StreamFailed if the stream is dead or an error."""
    source = reply.source
    assert source is not None, "peek() takes a streamed reply"
    try:
        chunk: bytes | None = b""
        while not chunk:
            chunk = await source.next_chunk()
            if chunk is None:
                raise StreamFailed(502, "upstream closed the stream before sending anything")
    except UpstreamBroken as e:
        source.close()
        raise StreamFailed(502, f"upstream stream broke before the first byte: {e}") from None
    except BaseException:
        source.close()
        raise
    error = _error_event(chunk)
    if error is not None:
        source.close()
        status, message = error
        raise StreamFailed(status, f"upstream stream began with an error event: {message}", chunk)
    reply.source = ReplaySource(chunk, source)
    return reply


def _error_event(chunk: bytes) -> tuple[int, str] | None:
    """The status an error frame at the start of a stream stands for (Anthropic or OpenAI SSE),
    and its message."""
    head = chunk.lstrip()
    if head.startswith(b"event: error") or head.startswith(b"event:error"):
        data = head.split(b"data:", 1)[1] if b"data:" in head else b"{}"
    elif head.startswith(b'data: {"error"') or head.startswith(b'data:{"error"'):
        data = head.split(b"data:", 1)[1]
    else:
        return None
    try:
        error = orjson.loads(data.split(b"\n", 1)[0]).get("error", {})
        kind, message = error.get("type"), str(error.get("message") or "no message")
    except (orjson.JSONDecodeError, AttributeError):
        kind, message = None, "unreadable"
    return _STREAM_ERROR_STATUS.get(kind, 500), message
