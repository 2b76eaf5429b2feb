"""Amazon Bedrock's event streams (`application/vnd.amazon.eventstream`) turned into Anthropic SSE.

Frames are decoded incrementally by botocore's `EventStreamBuffer` (prelude and message CRCs
checked), so a frame split across reads waits for its rest. `InvokeStreamSource` unwraps the
Anthropic events InvokeModelWithResponseStream carries (base64 in each `chunk`); `ConverseStreamSource`
translates ConverseStream events. An exception frame becomes the Anthropic `error` event, always at
an event boundary; a corrupted frame ends the stream with an `error` event (or a 502 before any).
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from typing import Any

import orjson

from parley.core.context import RequestContext
from parley.core.sse import encode_event
from parley.core.stream import ChunkSource, WrappedSource
from parley.core.usage import AnthropicStreamSniffer
from parley.providers.anthropic import SniffingSource
from parley.translate.bedrock.converse_response import ConverseStreamTranslator
from parley.translate.bedrock.errors import map_error, stream_error_event
from parley.transport.http import UpstreamBroken

log = logging.getLogger("parley.providers.bedrock")


@dataclass(slots=True)
class Frame:
    """One decoded event-stream message: `kind` is its event or exception type."""

    exception: bool
    kind: str
    payload: bytes


class FrameReader:
    """Bytes in, whole frames out; raises UpstreamBroken on a corrupted frame."""

    __slots__ = ("buffer",)

    def __init__(self) -> None:
        from botocore.eventstream import EventStreamBuffer

        self.buffer = EventStreamBuffer()

    def feed(self, chunk: bytes) -> list[Frame]:
        from botocore.eventstream import ParserError

        self.buffer.add_data(chunk)
        frames: list[Frame] = []
        try:
            for message in self.buffer:
                headers = message.headers
                kind = headers.get(":message-type", "event")
                if kind == "event":
                    frames.append(Frame(False, str(headers.get(":event-type", "")), message.payload))
                elif kind == "exception":
                    frames.append(Frame(True, str(headers.get(":exception-type", "")), message.payload))
                else:  # `error` messages name the code in headers
                    payload = orjson.dumps({"message": headers.get(":error-message", "")})
                    frames.append(Frame(True, str(headers.get(":error-code", "")), payload))
        except ParserError as e:
            raise UpstreamBroken(f"Amazon Bedrock event stream is corrupted: {e}") from None
        return frames


def exception_event(frame: Frame) -> tuple[str, dict[str, Any]]:
    """The Anthropic `error` event for an exception frame."""
    try:
        data = orjson.loads(frame.payload)
    except orjson.JSONDecodeError:
        data = {}
    message = data.get("message") if isinstance(data, dict) else None
    _, kind, text = map_error(frame.kind, 500, message)
    return stream_error_event(kind, text)


class _FrameSource(WrappedSource):
    """Shared reading: frames from the inner bytes, a corrupted stream ended cleanly."""

    __slots__ = ("_ended", "_started", "ctx", "reader")

    def __init__(self, inner: ChunkSource, ctx: RequestContext) -> None:
        super().__init__(inner)
        self.reader = FrameReader()
        self.ctx = ctx
        self._ended = False
        self._started = False

    at_boundary = True  # only whole events are returned

    async def next_chunk(self) -> bytes | None:
        if self._ended:
            return None
        chunk = await self.inner.next_chunk()
        if chunk is None:
            self._ended = True
            tail = self.at_end()
            return tail or None
        try:
            out = self.frames(self.reader.feed(chunk))
        except UpstreamBroken as e:
            if not self._started:
                raise
            self._ended = True
            log.warning("request %s: %s", self.ctx.request_id, e)
            return self.encode([stream_error_event("api_error", str(e))])
        self._started = self._started or bool(out)
        return out

    def encode(self, events: list[tuple[str, dict[str, Any]]]) -> bytes:
        parts = []
        for name, payload in events:
            if name == "error":
                payload = dict(payload, request_id=self.ctx.request_id)
                self.ctx.error_type = self.ctx.error_type or payload["error"]["type"]
                self.ctx.error_message = payload["error"]["message"]
                self._ended = True
            parts.append(encode_event(name, payload))
        return b"".join(parts)

    def frames(self, frames: list[Frame]) -> bytes:
        raise NotImplementedError

    def at_end(self) -> bytes:
        return b""


class InvokeStreamSource(_FrameSource):
    """InvokeModelWithResponseStream frames in, the Anthropic SSE events they carry out.

    `amazon-bedrock-invocationMetrics` (on the last event) is taken off the event and kept in
    `metrics`; its counts, cache reads and writes included, are the final usage."""

    __slots__ = ("metrics",)

    def __init__(self, inner: ChunkSource, ctx: RequestContext) -> None:
        super().__init__(inner, ctx)
        self.metrics: dict[str, Any] | None = None

    def frames(self, frames: list[Frame]) -> bytes:
        events: list[tuple[str, dict[str, Any]]] = []
        for frame in frames:
            if self._ended:
                break
            if frame.exception:
                events.append(exception_event(frame))
                break
            if frame.kind != "chunk":
                continue
            event = _chunk_event(frame.payload)
            if event is None:
                continue
            metrics = event.pop("amazon-bedrock-invocationMetrics", None)
            if isinstance(metrics, dict):
                self.metrics = metrics
            events.append((str(event.get("type")), event))
        return self.encode(events)


def _chunk_event(payload: bytes) -> dict[str, Any] | None:
    try:
        data = orjson.loads(payload)
        event = orjson.loads(base64.b64decode(data["bytes"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise UpstreamBroken("Amazon Bedrock sent a stream chunk that is not an Anthropic event") from None
    return event if isinstance(event, dict) and isinstance(event.get("type"), str) else None


def apply_invocation_metrics(ctx: RequestContext, metrics: dict[str, Any]) -> None:
    """Bedrock's own count of the call: input (excluding cache), output, cache reads and writes."""
    usage = ctx.usage
    for name, field in (
        ("inputTokenCount", "input_tokens"),
        ("outputTokenCount", "output_tokens"),
        ("cacheReadInputTokenCount", "cache_read_input_tokens"),
        ("cacheWriteInputTokenCount", "cache_creation_input_tokens"),
    ):
        value = metrics.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            setattr(usage, field, value)


class InvokeSniffingSource(SniffingSource):
    """The Anthropic stream checks and usage reading, then Bedrock's invocation metrics on top."""

    __slots__ = ("_applied", "_invoke")

    def __init__(self, inner: InvokeStreamSource, ctx: RequestContext) -> None:
        sniffer = ctx.stream_sniffer = AnthropicStreamSniffer(ctx.usage)
        super().__init__(inner, sniffer, ctx)
        self._invoke = inner
        self._applied = False

    async def next_chunk(self) -> bytes | None:
        chunk = await super().next_chunk()
        if not self._applied and self._invoke.metrics is not None:
            self._applied = True
            apply_invocation_metrics(self.ctx, self._invoke.metrics)
        return chunk


class ConverseStreamSource(_FrameSource):
    """ConverseStream frames in, Anthropic SSE events out (usage recorded at the end)."""

    __slots__ = ("machine", "sniffer")

    def __init__(self, inner: ChunkSource, ctx: RequestContext, machine: ConverseStreamTranslator) -> None:
        super().__init__(inner, ctx)
        self.machine = machine
        # reads the translated events as it reads a native stream: a stream cut before Converse's
        # usage arrives is billed by the text relayed
        self.sniffer = ctx.stream_sniffer = AnthropicStreamSniffer(ctx.usage)

    @property
    def at_eof(self) -> bool:
        return self._ended or self.machine.finished

    def frames(self, frames: list[Frame]) -> bytes:
        events: list[tuple[str, dict[str, Any]]] = []
        for frame in frames:
            if frame.exception:
                error = exception_event(frame)[1]["error"]
                events.extend(self.machine.fail(error["type"], error["message"]))
                break
            try:
                payload = orjson.loads(frame.payload) if frame.payload else {}
            except orjson.JSONDecodeError:
                payload = None
            if not isinstance(payload, dict):
                events.extend(self.machine.fail("api_error", "Amazon Bedrock sent an event that is not JSON"))
                break
            events.extend(self.machine.feed(frame.kind, payload))
        return self._settle(events)

    def at_end(self) -> bytes:
        return self._settle(self.machine.finish())

    def _settle(self, events: list[tuple[str, dict[str, Any]]]) -> bytes:
        for name, payload in events:
            if name == "message_delta":
                self.ctx.usage.update(payload["usage"])
                self.ctx.usage.estimated = self.machine.estimated
        if self.machine.finished:
            self._ended = True
        out = self.encode(events)
        self.sniffer.feed(out)
        return out
