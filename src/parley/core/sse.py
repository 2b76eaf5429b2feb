"""Server-sent events: an incremental decoder and an encoder.

The decoder follows the WHATWG rules the official SDKs implement: `\n`, `\r` and `\r\n` line ends,
one optional space after the colon, comment lines starting with `:`, multi-line `data`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson


class Event(NamedTuple):
    event: str | None
    data: str


class SSEDecoder:
    """Feed raw bytes as they arrive; get back the events they complete."""

    __slots__ = ("_buf", "_skip_lf")

    def __init__(self) -> None:
        self._buf = b""
        self._skip_lf = False  # the last chunk ended in CR: a leading LF belongs to it

    @property
    def at_boundary(self) -> bool:
        """True when every byte fed so far belongs to a completed event."""
        return not self._buf

    def feed(self, chunk: bytes) -> list[Event]:
        events = []
        for block in self.blocks(chunk):
            event = parse_block(block)
            if event is not None:
                events.append(event)
        return events

    def blocks(self, chunk: bytes) -> list[bytes]:
        """The raw blocks (line ends made `\n`, no blank line) that `chunk` completes; `parse_block`
        makes each an event. `feed` is both."""
        if self._skip_lf and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._skip_lf = False
        if b"\r" in chunk:
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = self._buf + chunk if self._buf else chunk
        if b"\n\n" not in buf:
            self._buf = buf
            return []
        *blocks, self._buf = buf.split(b"\n\n")
        return blocks

    def flush(self) -> list[Event]:
        """Events left in the buffer when the stream ends without a final blank line."""
        rest, self._buf = self._buf, b""
        event = parse_block(rest.strip(b"\n")) if rest.strip() else None
        return [event] if event is not None else []


MAX_EVENT_BYTES = 1 << 20  # no event of either API comes near this; a longer one is garbage


class EventTooLarge(ValueError):
    """A stream's event grew past the limit without ending."""


_BOUNDARIES = ((b"\n\n", 2), (b"\r\n\r\n", 4), (b"\r\r", 2))


class WholeEvents:
    """Cuts raw SSE bytes at the last event boundary: what `feed` returns is whole events only, the
    rest waits for the bytes that complete it. A stream cut mid-event then leaves nothing partial
    on the client's side, so an error event sent after it is read as one."""

    __slots__ = ("limit", "tail")

    def __init__(self, limit: int = MAX_EVENT_BYTES) -> None:
        self.tail = b""
        self.limit = limit

    def feed(self, chunk: bytes) -> bytes:
        data = self.tail + chunk if self.tail else chunk
        marks = _BOUNDARIES if b"\r" in data else _BOUNDARIES[:1]
        cut = 0
        for mark, size in marks:
            at = data.rfind(mark)
            if at >= 0 and at + size > cut:
                cut = at + size
        self.tail = data[cut:]
        if len(self.tail) > self.limit:
            raise EventTooLarge(f"upstream sent an event of more than {self.limit} bytes")
        return data[:cut] if self.tail else data


def parse_block(block: bytes) -> Event | None:
    # Fast paths for the frames Anthropic ("event: x\ndata: {...}") and OpenAI ("data: {...}")
    # send; anything else (comments, ids, multi-line data, odd spacing) takes the general parser.
    if block.startswith(b"event: "):
        nl = block.find(b"\n")
        if nl > 0 and block.startswith(b"data: ", nl + 1) and block.find(b"\n", nl + 1) < 0:
            return Event(block[7:nl].decode("utf-8", "replace"), block[nl + 7 :].decode("utf-8", "replace"))
    elif block.startswith(b"data: ") and b"\n" not in block:
        return Event(None, block[6:].decode("utf-8", "replace"))
    return _parse_lines(block)


def _parse_lines(block: bytes) -> Event | None:
    name: str | None = None
    data: list[str] = []
    for line in block.decode("utf-8", "replace").split("\n"):
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if name is None and not data:
        return None
    return Event(name, "\n".join(data))


def event_object(data: str) -> dict[str, Any]:
    """An event's JSON data as a dict; {} when it is not a JSON object."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def encode_event(name: str, payload: Any) -> bytes:
    """One Anthropic-style frame: an `event:` line and a JSON `data:` line."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def encode_data(payload: Any) -> bytes:
    """One OpenAI-style frame: a JSON `data:` line only."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


PING_FRAME = b'event: ping\ndata: {"type": "ping"}\n\n'
OPENAI_DONE_FRAME = b"data: [DONE]\n\n"
