"""The response cache for the Anthropic Messages API, as a filter (phase `cache`).

Turned on as in LiteLLM:

    litellm_settings:
      cache: true
      cache_params: {type: local | redis, ttl: 600, url: redis://..., namespace: ...}

`type: redis` uses `cache_params.url` (or host/port/password), else the gateway's Redis. A model
opts out with `params.cache: false` on its deployments. Per request: the `cache-control` header
(`no-cache`: do not answer from the cache; `no-store`: do not store the reply), or
`litellm_metadata: {cache: {no-cache: true, no-store: true, ttl: 60}}` (also accepted as a top-level
`cache` object). Hits carry `x-parley-cache: hit`, set `ctx.cache_hit`, and count no usage.
Only complete successful replies are stored; streamed ones are rebuilt from their events and a
hit is replayed as a valid stream (or as JSON) whatever the original was.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

import orjson

from parley.core.anthropic_stream import message_frames
from parley.core.context import RequestContext, StateKey
from parley.core.stream import FrameSource, UpstreamReply
from parley.core.tasks import Tasks
from parley.core.usage import Usage
from parley.filters.cache.accumulate import MessageAccumulator, json_message
from parley.filters.cache.key import cache_key
from parley.filters.cache.store import CacheStore
from parley.pipeline.filter import Filter, Phase, StreamEvent

log = logging.getLogger("parley.cache")

HEADER = "x-parley-cache"
ROUTES = frozenset({"/v1/messages", "sdk:/v1/messages"})  # not count_tokens, not the pass-through


@dataclass(slots=True)
class Lookup:
    """One request's cache key and controls; `acc` rebuilds a streamed reply to store it."""

    key: str
    controls: dict[str, Any]
    hit: bool = False
    acc: MessageAccumulator | None = None


LOOKUP: StateKey[Lookup] = StateKey("cache.lookup")


def controls_of(ctx: RequestContext) -> dict[str, Any]:
    """The per-request cache controls: headers, `litellm_metadata.cache`, a top-level `cache`."""
    controls: dict[str, Any] = {}
    for directive in (ctx.headers.get("cache-control") or "").lower().split(","):
        directive = directive.strip()
        if directive in ("no-cache", "no-store"):
            controls[directive] = True
    meta = ctx.litellm_metadata
    for source in (ctx.cache_controls, meta.get("cache") if isinstance(meta, dict) else None):
        if isinstance(source, dict):
            controls.update({k: v for k, v in source.items() if k in ("no-cache", "no-store", "ttl")})
    return controls


def model_allows_cache(ctx: RequestContext) -> bool:
    return all(t.deployment.params.get("cache", True) is not False for t in ctx.targets)


class ResponseCache(Filter):
    phase = Phase.CACHE

    def __init__(self, store: CacheStore, ttl: float, tasks: Tasks) -> None:
        self.store = store
        self.ttl = ttl
        self.tasks = tasks

    async def on_request(self, ctx: RequestContext, body: dict[str, Any] | None) -> UpstreamReply | None:
        """A reply from the cache, or None (the real reply is then stored when complete)."""
        if body is None or ctx.route not in ROUTES or ctx.api != "anthropic" or not model_allows_cache(ctx):
            return None
        lookup = Lookup(cache_key(ctx.api, body, ctx.headers), controls_of(ctx))
        ctx.state.put(LOOKUP, lookup)
        ctx.response_headers[HEADER] = "miss"
        if lookup.controls.get("no-cache"):
            return None
        raw = await self.store.get(lookup.key)
        if raw is None:
            return None
        try:
            message = orjson.loads(raw)["message"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None
        lookup.hit = ctx.cache_hit = True
        ctx.usage = Usage()
        ctx.response_headers[HEADER] = "hit"
        return self.replay(ctx, dict(message, id="msg_" + secrets.token_hex(12)))

    @staticmethod
    def replay(ctx: RequestContext, message: dict[str, Any]) -> UpstreamReply:
        """A stored message as the reply: a valid stream when the client streams, else JSON."""
        if ctx.stream:
            return UpstreamReply(
                200,
                {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"},
                source=FrameSource(message_frames(message)),
            )
        return UpstreamReply(200, {"content-type": "application/json"}, body=orjson.dumps(message))

    def _storable(self, ctx: RequestContext, status: int) -> Lookup | None:
        lookup = ctx.state.get(LOOKUP)
        if lookup is None or lookup.hit or status != 200 or lookup.controls.get("no-store"):
            return None
        return lookup

    async def on_response(self, ctx: RequestContext, reply: UpstreamReply) -> None:
        lookup = self._storable(ctx, reply.status)
        message = json_message(reply.body) if lookup is not None else None
        if lookup is not None and message is not None:
            self._store(lookup, message)

    def wants_events(self, ctx: RequestContext) -> bool:
        lookup = self._storable(ctx, 200)
        if lookup is None:
            return False
        lookup.acc = MessageAccumulator()
        return True

    def on_event(self, ctx: RequestContext, event: StreamEvent) -> list[StreamEvent]:
        lookup = ctx.state.get(LOOKUP)
        if lookup is not None and lookup.acc is not None:
            lookup.acc.feed_event(event.name, event.data)
        return [event]

    def on_stream_end(self, ctx: RequestContext) -> list[StreamEvent]:
        lookup = ctx.state.get(LOOKUP)
        acc = lookup.acc if lookup is not None else None
        if lookup is not None and acc is not None and acc.complete and not acc.failed and acc.message:
            self._store(lookup, acc.message)
        return []

    def _store(self, lookup: Lookup, message: dict[str, Any]) -> None:
        if not message.get("stop_reason"):
            return
        ttl = float(lookup.controls.get("ttl") or self.ttl)
        self.tasks.spawn(self.store.set(lookup.key, orjson.dumps({"message": message}), ttl))
