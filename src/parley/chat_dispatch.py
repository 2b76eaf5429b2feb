"""Send a parsed Chat Completions request to the deployment that serves it.

OpenAI-protocol backends get the client's bytes with only `model` rewritten (streams relayed
unbuffered, usage read on the side); others go through `Gateway.bridges[("openai", api)]`.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from parley.context import RequestContext
from parley.dispatch import native_body
from parley.errors import GatewayError
from parley.gateway import Gateway
from parley.policies.metadata import apply_request_metadata
from parley.providers.base import ChunkSource, UpstreamCall, UpstreamReply
from parley.providers.openai import openai_forwardable_headers
from parley.router.table import Target
from parley.sse import SSEDecoder
from parley.usage import Usage


async def send_chat(gw: Gateway, ctx: RequestContext, body: dict[str, Any], raw: bytes,
                    headers: Mapping[str, str]) -> UpstreamReply:
    """Route a chat completion request and send it."""

    async def attempt(target: Target) -> UpstreamReply:
        api = gw.provider_for(target.deployment).api
        if api == "openai":
            return await send_openai_native(gw, ctx, target, body, raw, headers)
        bridge = gw.bridges.get(("openai", api))
        if bridge is None:
            raise GatewayError(400, f"model {ctx.model!r}: no translation from the OpenAI API to the "
                                    f"{api} API", "invalid_request_error")
        return await bridge.chat(gw, ctx, target, body, headers)

    gw.router.targets(body["model"])  # 404 before any policy runs
    apply_request_metadata(ctx, body)
    await gw.before_call(ctx, body)
    return await gw.router.run(ctx, body["model"], attempt)


async def send_openai_native(gw: Gateway, ctx: RequestContext, target: Target, body: dict[str, Any],
                             raw: bytes, headers: Mapping[str, str]) -> UpstreamReply:
    provider = gw.provider_for(target.deployment)
    call = UpstreamCall(target, "/chat/completions", native_body(ctx, target, body, raw),
                        openai_forwardable_headers(headers), stream=body.get("stream") is True)
    reply = await provider.send(call)
    if reply.source is not None:
        reply.source = OpenAIUsageSource(reply.source, ctx)
    elif reply.body is not None:
        note_openai_json(ctx, reply)
    return reply


def apply_openai_usage(usage: Usage, data: Any) -> None:
    """Record OpenAI usage in Anthropic terms: cached tokens are cache reads, not fresh input."""
    if not isinstance(data, dict):
        return
    details = data.get("prompt_tokens_details") if isinstance(data.get("prompt_tokens_details"), dict) else {}
    cached = details.get("cached_tokens") or 0
    written = details.get("cache_write_tokens") or 0
    prompt = data.get("prompt_tokens") or 0
    usage.input_tokens = max(0, prompt - cached - written)
    usage.cache_read_input_tokens = cached
    usage.cache_creation_input_tokens = written
    usage.output_tokens = data.get("completion_tokens") or 0


def note_openai_json(ctx: RequestContext, reply: UpstreamReply) -> None:
    try:
        data = orjson.loads(reply.body) if reply.body else None
    except orjson.JSONDecodeError:
        data = None
    if reply.status >= 400:
        error = data.get("error") if isinstance(data, dict) else None
        ctx.error_type = str(error.get("type") or "api_error") if isinstance(error, dict) else "api_error"
        ctx.error_message = error.get("message") if isinstance(error, dict) else None
    elif isinstance(data, dict):
        apply_openai_usage(ctx.usage, data.get("usage"))


class OpenAIUsageSource:
    """Relays OpenAI SSE bytes untouched; decodes only frames that carry usage or an error."""

    __slots__ = ("inner", "decoder", "ctx")

    def __init__(self, inner: ChunkSource, ctx: RequestContext) -> None:
        self.inner = inner
        self.decoder = SSEDecoder()
        self.ctx = ctx

    @property
    def at_boundary(self) -> bool:
        return self.decoder.at_boundary

    async def next_chunk(self) -> bytes | None:
        chunk = await self.inner.next_chunk()
        if chunk is not None:
            for event in self.decoder.feed(chunk):
                data = event.data
                if data.startswith('{"error"') or ('"usage":{' in data or '"usage": {' in data):
                    self._note(data)
        return chunk

    def _note(self, data: str) -> None:
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(payload, dict):
            return
        if isinstance(payload.get("error"), dict):
            self.ctx.error_type = self.ctx.error_type or str(payload["error"].get("type") or "api_error")
            self.ctx.error_message = payload["error"].get("message")
        apply_openai_usage(self.ctx.usage, payload.get("usage"))

    def close(self) -> None:
        self.inner.close()
