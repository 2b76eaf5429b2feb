"""The hooks a filter attaches at, in the order the pipeline calls them (Envoy's filter chain).

1. `Authenticator.authenticate(ctx)` before the body is read; raises GatewayError(401).
2. `Filter.on_request(ctx, body)` after parsing and routing, before the upstream call, in phase
   order. It may edit `body` (then set `ctx.body_changed`), refuse (raise GatewayError) or answer
   itself (return an UpstreamReply, e.g. a cache hit: later filters' `on_request` is skipped).
   `Filter.observe_request(ctx, body)` is its synchronous form for filters that only take note
   (metrics, traces): called at the same point of the same walk, no coroutine per request.
3. `Filter.on_response(ctx, reply)` for a whole (not streamed) reply, in the client's protocol.
4. `Filter.on_event(ctx, event)` for each event of a streamed reply, parsed, in the client's
   protocol; only for filters whose `wants_events(ctx)` is true (else the stream stays bytes).
   Return the events to pass on: the same one, an edited copy, none (held back) or several.
   `on_stream_end(ctx)` returns what a filter still holds when the upstream stream ends.
5. `Filter.on_done(ctx)` exactly once per request, however it ended (sent, refused, failed,
   abandoned), for every filter, including those whose `on_request` never ran. It is synchronous
   and must not block: queue I/O for a background writer.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar

import orjson

from parley.core.context import RequestContext
from parley.core.errors import GatewayError
from parley.core.stream import UpstreamReply


class Phase(IntEnum):
    """Where a filter runs; the chain orders filters by phase, then by the order they were added."""

    AUTH = 100
    ADMISSION = 150  # with Redis: one call asks what the limits, budgets and router need
    LIMITS = 200
    BUDGET = 300
    RETRIEVAL = 350  # before the guardrails: what retrieval adds is masked and screened with the rest
    GUARDRAILS = 400
    CACHE = 600
    RESTORE = 650  # after the cache, so what it stores stays masked (guardrails' PII restore)
    ACCOUNTING = 700
    LOGGING = 800
    METRICS = 900


@dataclass(slots=True)
class StreamEvent:
    """One streamed event in the client's protocol.

    `name` is the SSE event name (Anthropic) or None (OpenAI data-only frames); `data` the parsed
    JSON payload, or None for a payload that is not JSON (`[DONE]`); `raw` the event's text as
    received. To edit an event, return `event.edited(new_data)`: the relay re-encodes only those.
    """

    name: str | None
    data: Any
    raw: str
    frame: bytes | None = None  # the exact bytes received; None once edited

    def edited(self, data: Any) -> StreamEvent:
        return StreamEvent(self.name, data, "", None)

    def encode(self) -> bytes:
        if self.frame is not None:
            return self.frame
        payload = orjson.dumps(self.data) if self.data is not None else self.raw.encode()
        head = b"event: " + self.name.encode() + b"\n" if self.name is not None else b""
        return head + b"data: " + payload + b"\n\n"


class Filter:
    """Base class: override the hooks you need; each default passes everything through."""

    phase: ClassVar[Phase] = Phase.LOGGING

    async def on_request(self, ctx: RequestContext, body: dict[str, Any] | None) -> UpstreamReply | None:
        return None

    def observe_request(self, ctx: RequestContext, body: dict[str, Any] | None) -> None:
        """`on_request` for a filter that neither waits nor answers (override one of the two, not
        both): the chain calls it in the same walk, without a coroutine."""
        return None

    async def on_response(self, ctx: RequestContext, reply: UpstreamReply) -> None:
        return None

    def wants_events(self, ctx: RequestContext) -> bool:
        return False

    def on_event(self, ctx: RequestContext, event: StreamEvent) -> list[StreamEvent]:
        return [event]

    def on_stream_end(self, ctx: RequestContext) -> list[StreamEvent]:
        return []

    def on_done(self, ctx: RequestContext) -> None:
        return None


def client_key(headers: Mapping[str, str]) -> str | None:
    """The credential a client presented: `x-api-key`, else `Authorization: Bearer …`."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    auth = headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


class Authenticator:
    """Checks the master key when one is configured; open access otherwise."""

    def __init__(self, master_key: str | None) -> None:
        self.master_key = master_key
        self._master = master_key.encode() if master_key is not None else None

    @property
    def enabled(self) -> bool:
        return self.master_key is not None

    async def authenticate(self, ctx: RequestContext) -> None:
        ctx.key = client_key(ctx.headers)
        if self.master_key is None:
            return
        if ctx.key is None:
            raise GatewayError(
                401, "missing API key: send x-api-key or Authorization: Bearer", "authentication_error"
            )
        if not hmac.compare_digest(ctx.key.encode(), self._master or b""):
            raise GatewayError(401, "invalid x-api-key", "authentication_error")
        ctx.auth = "master"
