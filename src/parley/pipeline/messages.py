"""Send a parsed Anthropic Messages request to the deployment that serves it.

Native backends (Anthropic, mock) get the client's bytes with only `model` rewritten; others go
through the translators registered in `Gateway.bridges` (see `parley.bridges`).
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from parley.filters.cache.hook import model_allows_cache
from parley.core.context import RequestContext
from parley.core.errors import GatewayError, anthropic_error_body, anthropic_type_for_status
from parley.gateway import Gateway
from parley.providers.anthropic import forwardable_headers
from parley.core.stream import ChunkSource, UpstreamCall, UpstreamReply
from parley.filters.metadata import apply_request_metadata
from parley.core.deployment import Target
from parley.core.usage import AnthropicStreamSniffer


def native_body(ctx: RequestContext, target: Target, body: dict[str, Any], raw: bytes) -> bytes:
    """The bytes to send upstream: the client's own unless the model name or a policy changed them."""
    if body.get("model") == target.upstream_model and not ctx.body_changed:
        return raw
    return orjson.dumps(dict(body, model=target.upstream_model))


async def send_anthropic_native(gw: Gateway, ctx: RequestContext, target: Target,
                                body: dict[str, Any], raw: bytes, headers: Mapping[str, str],
                                path: str, query: str = "") -> UpstreamReply:
    """Forward to an Anthropic-protocol backend; usage is read off the reply for accounting."""
    provider = gw.provider_for(target.deployment)
    call = UpstreamCall(target, path, native_body(ctx, target, body, raw), forwardable_headers(headers),
                        stream=bool(body.get("stream")), query=query)
    reply = await provider.send(call)
    if reply.source is not None:
        sniffer = ctx.extra["stream_sniffer"] = AnthropicStreamSniffer(ctx.usage)  # for estimates
        reply.source = SniffingSource(reply.source, sniffer, ctx)
    elif reply.body is not None:
        note_json_reply(ctx, reply)
    return reply


def note_json_reply(ctx: RequestContext, reply: UpstreamReply) -> None:
    """Record usage or the error from an Anthropic JSON reply; replace garbage with a clear error.

    Well-formed Anthropic error bodies pass through unchanged (clients match on their wording).
    """
    try:
        data = orjson.loads(reply.body) if reply.body else None
    except orjson.JSONDecodeError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if reply.status < 400 and isinstance(data, dict):
        ctx.usage.update(data.get("usage"))
        return
    if reply.status >= 400 and isinstance(error, dict) and "type" in error:
        ctx.error_type = error.get("type")
        ctx.error_message = error.get("message")
        return
    snippet = (reply.body or b"")[:200].decode("utf-8", "replace")
    status = reply.status if reply.status >= 400 else 502
    error_type = anthropic_type_for_status(status)
    message = (f"upstream returned HTTP {reply.status} with an unexpected body: {snippet!r}"
               if reply.status >= 400 else f"upstream returned an invalid response body: {snippet!r}")
    ctx.error_type, ctx.error_message = error_type, message
    reply.status = status
    reply.body = anthropic_error_body(error_type, message, ctx.request_id)
    reply.headers["content-type"] = "application/json"


async def send_messages(gw: Gateway, ctx: RequestContext, body: dict[str, Any], raw: bytes,
                        headers: Mapping[str, str], query: str = "",
                        path: str = "/v1/messages") -> UpstreamReply:
    """Route a Messages request (or count_tokens, by `path`) and send it."""

    async def attempt(target: Target) -> UpstreamReply:
        api = gw.provider_for(target.deployment).api
        if api == "anthropic":
            return await send_anthropic_native(gw, ctx, target, body, raw, headers, path, query)
        bridge = gw.bridges.get(("anthropic", api))
        if bridge is None:
            raise GatewayError(400, f"model {ctx.model!r}: no translation from the Anthropic API "
                                    f"to the {api} API", "invalid_request_error")
        if path.endswith("/count_tokens"):
            return await bridge.count_tokens(gw, ctx, target, body, headers)
        return await bridge.messages(gw, ctx, target, body, headers)

    targets = gw.router.targets(body["model"])  # 404 before any policy runs
    apply_request_metadata(ctx, body)
    await gw.before_call(ctx, body)
    cache = gw.response_cache if path == "/v1/messages" and model_allows_cache(targets) else None
    if cache is not None:
        hit = await cache.lookup(ctx, body, headers)
        if hit is not None:
            return hit
    if "cache" in body:  # LiteLLM's gateway-only cache controls: never sent upstream
        body.pop("cache")
        ctx.body_changed = True
    reply = await gw.router.run(ctx, body["model"], attempt)
    return cache.capture(ctx, reply) if cache is not None else reply


class SniffingSource:
    """Passes native Anthropic SSE bytes through untouched while reading usage on the side."""

    __slots__ = ("inner", "sniffer", "ctx")

    def __init__(self, inner: ChunkSource, sniffer: AnthropicStreamSniffer, ctx: RequestContext) -> None:
        self.inner = inner
        self.sniffer = sniffer
        self.ctx = ctx

    @property
    def at_boundary(self) -> bool:
        return self.sniffer.at_boundary

    @property
    def at_eof(self) -> bool:
        return getattr(self.inner, "at_eof", False)

    async def next_chunk(self) -> bytes | None:
        chunk = await self.inner.next_chunk()
        if chunk is not None:
            self.sniffer.feed(chunk)
            if self.sniffer.error is not None and self.ctx.error_type is None:
                self.ctx.error_type = self.sniffer.error.get("type", "api_error")
        return chunk

    def close(self) -> None:
        self.inner.close()
