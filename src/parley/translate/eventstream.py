"""AWS event-stream framing, and Anthropic SSE re-framed the way Bedrock's InvokeModel streams it.

A message is: total length and headers length (4 bytes each, big-endian), the CRC32 of those 8
bytes, the headers (name length, name, type 7 = string, value length, value), the payload, and the
CRC32 of everything before it. Bedrock's `InvokeModelWithResponseStream` sends each Anthropic
event as a `chunk` event whose JSON payload holds the event's JSON, base64-encoded, in `bytes`;
failures are `exception` messages named by `:exception-type`. botocore's `EventStreamBuffer`
(what the AnthropicBedrock client and boto3 decode with) reads what `encode_message` writes.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Mapping

import orjson

from parley.core.context import RequestContext
from parley.core.sse import Event, SSEDecoder, event_object
from parley.core.stream import ChunkSource, WrappedSource

EVENTSTREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
_STRING = 7

# Bedrock's exception names for the statuses parley answers with (rest-json `x-amzn-errortype`).
EXCEPTION_BY_STATUS = {
    400: "ValidationException",
    401: "AccessDeniedException",
    402: "ServiceQuotaExceededException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    413: "ValidationException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    502: "InternalServerException",
    503: "ServiceUnavailableException",
    504: "ModelTimeoutException",
    529: "ServiceUnavailableException",
}

# The members of Bedrock's `ResponseStream` union that carry errors, by Anthropic error type.
STREAM_EXCEPTION_BY_TYPE = {
    "invalid_request_error": "validationException",
    "rate_limit_error": "throttlingException",
    "overloaded_error": "serviceUnavailableException",
    "timeout_error": "modelTimeoutException",
    "api_error": "internalServerException",
}


def exception_name(status: int) -> str:
    """The Bedrock exception a status maps to (unknown 4xx: validation, 5xx: internal)."""
    if status in EXCEPTION_BY_STATUS:
        return EXCEPTION_BY_STATUS[status]
    return "ValidationException" if status < 500 else "InternalServerException"


Headers = Mapping[str, str] | list[tuple[str, str]]


def encode_headers(headers: Headers) -> bytes:
    """The header block of a message with string headers (a mapping or name/value pairs)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return b"".join(
        struct.pack(">B", len(n)) + n + struct.pack(">BH", _STRING, len(v)) + v
        for n, v in ((name.encode(), value.encode()) for name, value in pairs)
    )


def encode_message(headers: Headers | bytes, payload: bytes) -> bytes:
    """One event-stream message; `headers` as for `encode_headers`, or a block it made."""
    head = headers if isinstance(headers, bytes) else encode_headers(headers)
    prelude = struct.pack(">II", 16 + len(head) + len(payload), len(head))
    body = b"".join((prelude, struct.pack(">I", zlib.crc32(prelude)), head, payload))
    return body + struct.pack(">I", zlib.crc32(body))


_CHUNK_HEADERS = encode_headers(
    [(":event-type", "chunk"), (":content-type", "application/json"), (":message-type", "event")]
)


def chunk_frame(event_json: bytes) -> bytes:
    """A Bedrock `chunk` event carrying one Anthropic stream event (its JSON bytes)."""
    return encode_message(_CHUNK_HEADERS, b'{"bytes":"' + base64.b64encode(event_json) + b'"}')


def exception_frame(name: str, message: str) -> bytes:
    """A Bedrock stream exception (`:message-type: exception`) with its JSON message."""
    return encode_message(
        [
            (":exception-type", name),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        orjson.dumps({"message": message}),
    )


def stream_error_frame(error_type: str, message: str) -> bytes:
    """The exception frame for an Anthropic error event of `error_type`."""
    return exception_frame(STREAM_EXCEPTION_BY_TYPE.get(error_type, "modelStreamErrorException"), message)


class EventStreamSource(WrappedSource):
    """Anthropic SSE in, Bedrock event-stream out: one `chunk` per event, an `error` event as an
    exception, and Bedrock's `amazon-bedrock-invocationMetrics` on `message_stop`. Only whole
    frames are returned, so a keep-alive may go between any two."""

    __slots__ = ("ctx", "decoder", "ended")

    def __init__(self, inner: ChunkSource, ctx: RequestContext) -> None:
        super().__init__(inner)
        self.decoder = SSEDecoder()
        self.ctx = ctx
        self.ended = False

    at_boundary = True

    @property
    def at_eof(self) -> bool:
        return self.inner.at_eof and self.decoder.at_boundary

    async def next_chunk(self) -> bytes | None:
        if self.ended:
            return None
        chunk = await self.inner.next_chunk()
        if chunk is None:
            self.ended = True
            events = self.decoder.flush()
            return b"".join(map(self._frame, events)) if events else None
        return b"".join(self._frame(event) for event in self.decoder.feed(chunk))

    def _frame(self, event: Event) -> bytes:
        name, data = event.event, event.data
        if name == "error":
            error = event_object(data).get("error")
            error = error if isinstance(error, dict) else {}
            return stream_error_frame(str(error.get("type")), str(error.get("message") or "stream error"))
        if name == "message_stop":
            return chunk_frame(orjson.dumps(dict(event_object(data), **self._metrics())))
        return chunk_frame(data.encode())

    def _metrics(self) -> dict[str, object]:
        ctx, usage = self.ctx, self.ctx.usage
        return {
            "amazon-bedrock-invocationMetrics": {
                "inputTokenCount": usage.input_tokens,
                "outputTokenCount": usage.output_tokens,
                "invocationLatency": round(ctx.latency_ms),
                "firstByteLatency": round(ctx.ttft_ms or ctx.latency_ms),
                "cacheReadInputTokenCount": usage.cache_read_input_tokens,
                "cacheWriteInputTokenCount": usage.cache_creation_input_tokens,
            }
        }
