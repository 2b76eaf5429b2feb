"""Send a parsed Chat Completions request to the deployment that serves it.

OpenAI-protocol backends get the client's bytes with only `model` rewritten (streams relayed
unbuffered, usage read on the side); others go through `Gateway.bridges[("openai", api)]`.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from parley.core.context import RequestContext
from parley.pipeline.messages import native_body
from parley.core.errors import GatewayError
from parley.gateway import Gateway
from parley.filters.metadata import apply_request_metadata
from parley.core.stream import ChunkSource, UpstreamCall, UpstreamReply
from parley.providers.openai import openai_forwardable_headers
from parley.translate.openai_options import options_from_params
from parley.core.deployment import Target
from parley.core.sse import SSEDecoder
from parley.core.usage import Usage


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
    """Forward as sent (model rewritten). A stream whose client did not ask for usage gets it asked
    for anyway, where the server accepts it, so spend is exact; that usage chunk is kept from the
    client, which did not ask for it."""
    provider = gw.provider_for(target.deployment)
    added_usage = _wants_usage_added(target, body)
    if added_usage:
        options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
        body = dict(body, stream_options=dict(options, include_usage=True))
        ctx.body_changed = True
    call = UpstreamCall(target, "/chat/completions", native_body(ctx, target, body, raw),
                        openai_forwardable_headers(headers), stream=body.get("stream") is True)
    reply = await provider.send(call)
    if reply.source is not None:
        reply.source = OpenAIUsageSource(reply.source, ctx, hide_usage_chunk=added_usage)
    elif reply.body is not None:
        note_openai_json(ctx, reply)
    return reply


def _wants_usage_added(target: Target, body: dict[str, Any]) -> bool:
    if body.get("stream") is not True:
        return False
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return False  # the client asked: it gets the chunk
    dep = target.deployment
    return options_from_params(dep.provider, dep.params).stream_include_usage


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
    """Relays OpenAI SSE bytes untouched; decodes only frames that carry usage or an error.

    With `hide_usage_chunk` (parley asked for usage the client did not), frames are re-emitted one by
    one with their data unchanged, minus the usage-only chunk (`choices: []`)."""

    __slots__ = ("inner", "decoder", "ctx", "hide_usage_chunk")

    def __init__(self, inner: ChunkSource, ctx: RequestContext, hide_usage_chunk: bool = False) -> None:
        self.inner = inner
        self.decoder = SSEDecoder()
        self.ctx = ctx
        self.hide_usage_chunk = hide_usage_chunk

    @property
    def at_boundary(self) -> bool:
        return self.decoder.at_boundary

    async def next_chunk(self) -> bytes | None:
        chunk = await self.inner.next_chunk()
        if chunk is None:
            return None
        kept: list[bytes] = []
        for event in self.decoder.feed(chunk):
            data = event.data
            has_usage = '"usage":{' in data or '"usage": {' in data
            if data.startswith('{"error"') or has_usage:
                self._note(data)
            if self.hide_usage_chunk and not (has_usage and '"choices":[]' in data.replace(" ", "")):
                kept.append(b"data: " + data.encode() + b"\n\n")
        return b"".join(kept) if self.hide_usage_chunk else chunk

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
