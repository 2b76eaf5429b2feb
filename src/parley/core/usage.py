"""Token usage as Anthropic reports it, and a sniffer that reads it off a native SSE stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from parley.core.sse import SSEDecoder, event_object, parse_block


@dataclass(slots=True)
class Usage:
    """Token counts by kind. `input_tokens` excludes cache reads and writes, as Anthropic's does."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_5m: int = 0
    cache_creation_1h: int = 0
    estimated: bool = False

    def update(self, usage: Any) -> None:
        """Apply an Anthropic usage object; absent or null fields keep their value (cumulative)."""
        if not isinstance(usage, dict):
            return
        get = usage.get  # the four counts unrolled: this runs for every reply
        if isinstance(value := get("input_tokens"), int):
            self.input_tokens = value
        if isinstance(value := get("output_tokens"), int):
            self.output_tokens = value
        if isinstance(value := get("cache_creation_input_tokens"), int):
            self.cache_creation_input_tokens = value
        if isinstance(value := get("cache_read_input_tokens"), int):
            self.cache_read_input_tokens = value
        breakdown = get("cache_creation")
        if isinstance(breakdown, dict):
            self.cache_creation_5m = int(breakdown.get("ephemeral_5m_input_tokens") or 0)
            self.cache_creation_1h = int(breakdown.get("ephemeral_1h_input_tokens") or 0)

    def update_add(self, usage: Any) -> None:
        """Add an Anthropic usage object's counts (for summing many messages)."""
        for name, value in _counts(usage):
            setattr(self, name, getattr(self, name) + value)

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
        }


_COUNTS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def _counts(usage: Any) -> list[tuple[str, int]]:
    """The integer token counts present in an Anthropic usage object."""
    if not isinstance(usage, dict):
        return []
    return [(name, usage[name]) for name in _COUNTS if isinstance(usage.get(name), int)]


class AnthropicStreamSniffer:
    """Reads usage, stop reason and errors off native Anthropic SSE bytes on the side.

    Only `message_start`, `message_delta` and `error` frames are JSON-decoded; the bytes themselves are
    forwarded untouched by the caller.
    """

    __slots__ = ("decoder", "error", "model", "output_chars", "saw_stop", "stop_reason", "usage")

    def __init__(self, usage: Usage) -> None:
        self.decoder = SSEDecoder()
        self.usage = usage
        self.stop_reason: str | None = None
        self.model: str | None = None
        self.error: dict[str, Any] | None = None
        self.saw_stop = False
        self.output_chars = 0

    def feed(self, chunk: bytes) -> None:
        for block in self.decoder.blocks(chunk):
            nl = block.find(b"\n") if block.startswith(b"event: ") else -1
            if nl > 0 and block.startswith(b"data: ", nl + 1) and block.find(b"\n", nl + 1) < 0:
                # the usual one-line frame (the decoder's fast path), read off the bytes: text deltas
                # counted, frames that say nothing about usage skipped, the rest decoded
                name = block[7:nl]
                if name == b"content_block_delta":
                    self.output_chars += _frame_delta_chars(block, nl + 7)
                elif name in _READ:
                    self._event(name.decode(), block[nl + 7 :].decode("utf-8", "replace"))
                continue
            event = parse_block(block)
            if event is not None and event.event is not None:
                self._event(event.event, event.data)

    def _event(self, name: str, data: str) -> None:
        if name == "content_block_delta":
            self.output_chars += delta_chars(data)
        elif name == "message_start":
            message = event_object(data).get("message") or {}
            self.model = message.get("model")
            self.usage.update(message.get("usage"))
        elif name == "message_delta":
            body = event_object(data)
            self.usage.update(body.get("usage"))
            self.stop_reason = (body.get("delta") or {}).get("stop_reason") or self.stop_reason
        elif name == "message_stop":
            self.saw_stop = True
        elif name == "error":
            self.error = event_object(data).get("error") or {"type": "api_error"}


_READ = frozenset({b"message_start", b"message_delta", b"message_stop", b"error"})
_DELTA_FIELDS = ('"text":', '"thinking":', '"partial_json":')
_DELTA_FIELDS_BYTES = tuple(f.encode() for f in _DELTA_FIELDS)


def _frame_delta_chars(frame: bytes, data_at: int) -> int:
    """`delta_chars` of a one-line delta frame's data (from `data_at`), read off the bytes: quotes
    and field names are ASCII, so positions agree; only a non-ASCII value is decoded to count it."""
    for field in _DELTA_FIELDS_BYTES:
        at = frame.rfind(field, data_at)
        if at >= 0:
            start = frame.find(b'"', at + len(field)) + 1
            end = frame.rfind(b'"')
            if start <= 0 or end <= start:
                return 0
            value = frame[start:end]
            return len(value) if value.isascii() else len(value.decode("utf-8", "replace"))
    return 0


def delta_chars(data: str) -> int:
    """Characters of generated text in one `content_block_delta` (its text, thinking or JSON),
    read without decoding the event: the value is the last string in the frame."""
    for field in _DELTA_FIELDS:
        at = data.rfind(field)
        if at >= 0:
            start = data.find('"', at + len(field)) + 1
            return max(0, data.rfind('"') - start) if start > 0 else 0
    return 0
