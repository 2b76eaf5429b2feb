"""The response cache around `Router.run` for the Anthropic Messages API.

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
from typing import Any, Mapping

import orjson

from parley.core.anthropic_stream import message_frames
from parley.filters.cache.accumulate import MessageAccumulator
from parley.filters.cache.key import cache_key
from parley.filters.cache.store import LocalStore, RedisStore
from parley.config import ConfigError
from parley.core.context import RequestContext
from parley.core.stream import UpstreamReply
from parley.providers.mock import FrameSource
from parley.store.redis_link import DEFAULT_PREFIX, RedisLink, redis_url_from
from parley.core.usage import Usage

log = logging.getLogger("parley.cache")

HEADER = "x-parley-cache"


class ResponseCache:
    def __init__(self, store, ttl: float, spawn) -> None:
        self.store = store
        self.ttl = ttl
        self.spawn = spawn

    def controls(self, body: dict[str, Any], headers: Mapping[str, str],
                 meta: Any = None) -> dict[str, Any]:
        """The per-request cache controls: headers, `litellm_metadata.cache`, a top-level `cache`."""
        controls: dict[str, Any] = {}
        for directive in (headers.get("cache-control") or "").lower().split(","):
            directive = directive.strip()
            if directive in ("no-cache", "no-store"):
                controls[directive] = True
        for source in (body.get("cache"), meta.get("cache") if isinstance(meta, dict) else None):
            if isinstance(source, dict):
                controls.update({k: v for k, v in source.items() if k in ("no-cache", "no-store", "ttl")})
        return controls

    async def lookup(self, ctx: RequestContext, body: dict[str, Any],
                     headers: Mapping[str, str]) -> UpstreamReply | None:
        """A reply from the cache, or None (then call `capture` on the real reply)."""
        controls = self.controls(body, headers, ctx.extra.get("litellm_metadata"))
        ctx.extra["_cache"] = (cache_key(ctx.api, body, headers), controls)
        if controls.get("no-cache"):
            ctx.response_headers[HEADER] = "miss"
            return None
        raw = await self.store.get(ctx.extra["_cache"][0])
        if raw is None:
            ctx.response_headers[HEADER] = "miss"
            return None
        try:
            message = orjson.loads(raw)["message"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None
        message = dict(message, id="msg_" + secrets.token_hex(12))
        ctx.cache_hit = True
        ctx.usage = Usage()
        ctx.response_headers[HEADER] = "hit"
        if ctx.stream:
            return UpstreamReply(200, {"content-type": "text/event-stream; charset=utf-8",
                                       "cache-control": "no-cache"},
                                 source=FrameSource(message_frames(message)))
        return UpstreamReply(200, {"content-type": "application/json"}, body=orjson.dumps(message))

    def capture(self, ctx: RequestContext, reply: UpstreamReply) -> UpstreamReply:
        """Store `reply` once it is complete and successful (streams: when the stream ends)."""
        state = ctx.extra.get("_cache")
        if state is None or reply.status != 200 or state[1].get("no-store"):
            return reply
        key, controls = state
        ttl = float(controls.get("ttl") or self.ttl)
        if reply.source is not None:
            reply.source = CapturingSource(reply.source, lambda m: self._store(key, m, ttl))
        elif reply.body:
            try:
                message = orjson.loads(reply.body)
            except orjson.JSONDecodeError:
                return reply
            if isinstance(message, dict) and message.get("type") == "message":
                self._store(key, message, ttl)
        return reply

    def _store(self, key: str, message: dict, ttl: float) -> None:
        if not message.get("stop_reason"):
            return
        self.spawn(self.store.set(key, orjson.dumps({"message": message}), ttl))


class CapturingSource:
    """Passes a stream through while rebuilding its Message; stores it when the stream completes."""

    __slots__ = ("inner", "acc", "on_complete")

    def __init__(self, inner, on_complete) -> None:
        self.inner = inner
        self.acc = MessageAccumulator()
        self.on_complete = on_complete

    @property
    def at_boundary(self) -> bool:
        return getattr(self.inner, "at_boundary", True)

    async def next_chunk(self) -> bytes | None:
        chunk = await self.inner.next_chunk()
        if chunk is None:
            if self.acc.complete and not self.acc.failed:
                self.on_complete(self.acc.message)
        elif chunk:
            self.acc.feed(chunk)
        return chunk

    def close(self) -> None:
        self.inner.close()


def model_allows_cache(targets) -> bool:
    return all(t.deployment.params.get("cache", True) is not False for t in targets)


def install(gw) -> None:
    settings = gw.config.litellm_settings
    if not settings.get("cache"):
        gw.response_cache = None
        return
    params = settings.get("cache_params") or {}
    if not isinstance(params, dict):
        raise ConfigError("litellm_settings.cache_params: must be a mapping")
    kind = params.get("type", "local")
    ttl = float(params.get("ttl", 600))
    if kind == "local":
        store = LocalStore(int(params.get("max_entries", 10_000)))
    elif kind == "redis":
        store = RedisStore(_cache_link(gw, params), params.get("namespace"))
    else:
        raise ConfigError(f"litellm_settings.cache_params.type: {kind!r} is not supported "
                          "(use local or redis)")
    gw.response_cache = ResponseCache(store, ttl, gw.spawn)


def _cache_link(gw, params: Mapping[str, Any]) -> RedisLink:
    import os

    named = {"redis_url": params.get("url"), "redis_host": params.get("host"),
             "redis_port": params.get("port"), "redis_password": params.get("password")}
    url = redis_url_from(named, {})
    if url is None and gw.redis is not None:
        return gw.redis
    url = url or os.environ.get("REDIS_URL")
    if not url:
        raise ConfigError("litellm_settings.cache_params: type redis needs url (or host/port), "
                          "router_settings.redis_url or REDIS_URL")
    prefix = str(gw.config.router_settings.get("redis_key_prefix") or DEFAULT_PREFIX)
    link = RedisLink(url, prefix)
    gw.on_shutdown(link.close)
    return link
