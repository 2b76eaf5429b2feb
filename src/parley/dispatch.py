"""Send a parsed Anthropic Messages request to the deployment that serves it.

Native backends (Anthropic, mock) get the client's bytes with only `model` rewritten; others go
through the translators registered in `Gateway.bridges` (see `parley.bridges`).
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from parley.context import RequestContext
from parley.errors import GatewayError
from parley.gateway import Gateway
from parley.providers.anthropic import forwardable_headers
from parley.providers.base import ChunkSource, UpstreamCall, UpstreamReply
from parley.router.table import Target
from parley.usage import AnthropicStreamSniffer


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
        reply.source = SniffingSource(reply.source, AnthropicStreamSniffer(ctx.usage), ctx)
    elif reply.body is not None:
        note_json_reply(ctx, reply)
    return reply


def note_json_reply(ctx: RequestContext, reply: UpstreamReply) -> None:
    """Record usage or the error type from an Anthropic JSON reply."""
    try:
        data = orjson.loads(reply.body) if reply.body else None
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        if reply.status >= 400:
            ctx.error_type = "api_error"
        return
    if reply.status >= 400:
        error = data.get("error")
        ctx.error_type = error.get("type") if isinstance(error, dict) else "api_error"
        ctx.error_message = error.get("message") if isinstance(error, dict) else None
    else:
        ctx.usage.update(data.get("usage"))


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

    gw.router.targets(body["model"])  # 404 before any policy runs
    await gw.before_call(ctx, body)
    return await gw.router.run(ctx, body["model"], attempt)


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
