"""The one interface every backend implements, and the reply shape all of them return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from parley.core.deployment import Target


class ChunkSource(Protocol):
    """A streamed body. `next_chunk` returns None at the end and is safe to cancel while waiting."""

    async def next_chunk(self) -> bytes | None: ...

    def close(self) -> None: ...


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


class Provider(Protocol):
    """A backend. `api` names the wire protocol it speaks: "anthropic" or "openai"."""

    api: str

    async def send(self, call: UpstreamCall) -> UpstreamReply: ...
