"""The shapes every layer passes along: one upstream call, its reply, and a streamed body.

A streamed body is a `ChunkSource`. Its contract is explicit, so wrappers keep it:

- `next_chunk()` returns the next bytes (b"" when a read gave nothing to send yet) or None at the
  end; it is safe to cancel while it waits.
- `at_boundary`: every byte returned so far ends a complete event (a keep-alive ping may be sent).
- `at_eof`: the chunk just returned was the last one (the relay ends the reply in the same write).
- `close()` releases the upstream connection; called once, however the stream ends.
- `ready` (optional; absent means False): the next `next_chunk()` returns without waiting for the
  upstream (a chunk is in hand). The relay then needs no timer and no disconnect watcher for it.

`WrappedSource` forwards all of it; a wrapper overrides only what it changes (a wrapper that may
call its inner source's `next_chunk()` more than once per call must say `ready = False`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from parley.core.deployment import Target


class ChunkSource(Protocol):
    """A streamed reply body (see the module docstring for the contract)."""

    @property
    def at_boundary(self) -> bool: ...

    @property
    def at_eof(self) -> bool: ...

    async def next_chunk(self) -> bytes | None: ...

    def close(self) -> None: ...


class WrappedSource:
    """A source around another: forwards the whole contract; subclasses change what they need."""

    __slots__ = ("inner",)

    def __init__(self, inner: ChunkSource) -> None:
        self.inner = inner

    @property
    def at_boundary(self) -> bool:
        return self.inner.at_boundary

    @property
    def at_eof(self) -> bool:
        return self.inner.at_eof

    @property
    def ready(self) -> bool:
        return getattr(self.inner, "ready", False)

    async def next_chunk(self) -> bytes | None:
        return await self.inner.next_chunk()

    def close(self) -> None:
        self.inner.close()


class FrameSource:
    """A stream of ready-made whole frames (replayed replies, the mock model, cache hits)."""

    __slots__ = ("frames",)

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = deque(frames)

    at_boundary = True
    ready = True  # never waits

    @property
    def at_eof(self) -> bool:
        return not self.frames

    async def next_chunk(self) -> bytes | None:
        return self.frames.popleft() if self.frames else None

    def close(self) -> None:
        self.frames.clear()


@dataclass(slots=True)
class UpstreamCall:
    """One request to a backend, already in that backend's wire format."""

    target: Target
    path: str  # e.g. "/v1/messages", "/v1/messages/count_tokens", "/chat/completions"
    body: bytes
    headers: dict[str, str]  # client headers worth forwarding (lower-case names); auth is added
    stream: bool = False
    method: str = "POST"
    query: str = ""


@dataclass(slots=True)
class UpstreamReply:
    """What came back: a whole body, or a stream source when the backend streamed (status 200)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names, hop-by-hop removed
    body: bytes | None = None
    source: ChunkSource | None = None

    @property
    def is_stream(self) -> bool:
        return self.source is not None
