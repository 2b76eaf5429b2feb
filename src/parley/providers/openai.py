"""OpenAI-compatible Chat Completions backend (OpenAI, vLLM, llama.cpp, Ollama, DeepSeek, ...).

`api_base` includes the version path, as the openai SDK's `base_url` does; `/chat/completions` is
appended. Two ways in: `messages` adapts a hub (Anthropic) request through `parley.translate`;
`chat` forwards a Chat Completions client's own bytes (model rewritten) with usage read on the side.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson

from parley.config import ConfigError
from parley.core.anthropic_stream import message_frames
from parley.core.context import RequestContext
from parley.core.deployment import Deployment, Target
from parley.core.errors import GatewayError
from parley.core.stream import FrameSource, UpstreamCall, UpstreamReply
from parley.core.tokens import count_request_tokens
from parley.providers.anthropic import forwardable_headers
from parley.providers.base import HubCall
from parley.providers.openai_streams import (
    OpenAIUsageSource,
    TranslatingSource,
    note_openai_embeddings,
    note_openai_json,
    report_notes,
)
from parley.translate.anthropic_to_openai import to_openai_request
from parley.translate.fields import OPENAI_DROPPED_HEADERS
from parley.translate.openai_errors import translate_error
from parley.translate.openai_options import OpenAIOptions, options_from_params
from parley.translate.openai_stream import OpenAIStreamTranslator
from parley.translate.openai_to_anthropic import to_anthropic_message
from parley.transport.http import HttpClient

log = logging.getLogger("parley.providers.openai")

_SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}

# Client headers never sent to an OpenAI-compatible server: Anthropic's own on top of the rest.
_ANTHROPIC_ONLY = frozenset({"anthropic-version", *OPENAI_DROPPED_HEADERS})


def openai_forwardable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The Anthropic strip list applied, then Anthropic's own headers and the SDK's telemetry."""
    return {
        k: v
        for k, v in forwardable_headers(headers).items()
        if k not in _ANTHROPIC_ONLY and not k.startswith("x-stainless-")
    }


def _chat_bytes(ctx: RequestContext, target: Target, body: dict[str, Any], raw: bytes | None) -> bytes:
    """The client's own bytes unless the model name or a filter changed the body."""
    if raw is not None and body.get("model") == target.upstream_model and not ctx.body_changed:
        return raw
    return orjson.dumps(dict(body, model=target.upstream_model))


class OpenAIProvider:
    api = "openai"

    def __init__(self, http: HttpClient) -> None:
        self.http = http
        self._options: dict[str, OpenAIOptions] = {}

    def check(self, deployments: list[Deployment]) -> None:
        """Fail at startup on a bad per-deployment switch, not at the first request."""
        for dep in deployments:
            if dep.api == self.api:
                try:
                    self.options(dep)
                except ConfigError as e:
                    raise ConfigError(f"model_list entry {dep.model_name!r}: {e}") from None

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        headers = dict(call.headers)
        headers["content-type"] = "application/json"
        if call.target.deployment.api_key:
            headers["authorization"] = "Bearer " + call.target.deployment.api_key
        return await self.http.send_call(call, headers)

    async def chat(
        self,
        ctx: RequestContext,
        target: Target,
        body: dict[str, Any],
        raw: bytes | None,
        headers: Mapping[str, str],
    ) -> UpstreamReply:
        """Forward as sent (model rewritten). A stream whose client did not ask for usage gets it asked
        for anyway, where the server accepts it, so spend is exact; that usage chunk is kept from the
        client, which did not ask for it."""
        added_usage = self._wants_usage_added(target, body)
        if added_usage:
            given = body.get("stream_options")
            options: dict[str, Any] = given if isinstance(given, dict) else {}
            body = dict(body, stream_options=dict(options, include_usage=True))
            ctx.body_changed = True
        call = UpstreamCall(
            target,
            "/chat/completions",
            _chat_bytes(ctx, target, body, raw),
            openai_forwardable_headers(headers),
            stream=body.get("stream") is True,
        )
        reply = await self.send(call)
        if reply.source is not None:
            reply.source = OpenAIUsageSource(reply.source, ctx, hide_usage_chunk=added_usage)
        elif reply.body is not None:
            note_openai_json(ctx, reply)
        return reply

    async def embeddings(
        self, ctx: RequestContext, target: Target, body: dict[str, Any], raw: bytes | None
    ) -> UpstreamReply:
        """Forward an embeddings request as sent (model rewritten); usage read from the reply."""
        call = UpstreamCall(
            target,
            "/embeddings",
            _chat_bytes(ctx, target, body, raw),
            openai_forwardable_headers(ctx.headers),
        )
        reply = await self.send(call)
        note_openai_embeddings(ctx, reply)
        return reply

    def _wants_usage_added(self, target: Target, body: dict[str, Any]) -> bool:
        if body.get("stream") is not True:
            return False
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            return False  # the client asked: it gets the chunk
        dep = target.deployment
        return self.options(dep).stream_include_usage

    def options(self, deployment: Deployment) -> OpenAIOptions:
        options = self._options.get(deployment.id)
        if options is None:
            options = options_from_params(deployment.provider, deployment.params)
            self._options[deployment.id] = options
        return options

    def count_tokens(self, call: HubCall) -> UpstreamReply:
        """A local estimate: OpenAI-compatible servers have no count_tokens endpoint."""
        payload = {"input_tokens": count_request_tokens(call.body)}
        return UpstreamReply(200, {"content-type": "application/json"}, body=orjson.dumps(payload))

    async def messages(self, ctx: RequestContext, call: HubCall) -> UpstreamReply:
        """Translate a hub request to Chat Completions, send it, and translate the reply back."""
        if call.count_tokens:
            return self.count_tokens(call)
        target, body, headers = call.target, call.body, call.headers
        openai_body, dropped = to_openai_request(body, self.options(target.deployment), target.upstream_model)
        dropped.extend(name for name in OPENAI_DROPPED_HEADERS if headers.get(name))
        compacting = body.get("compaction") is not None  # asked whole, answered as one block
        if dropped:
            ctx.dropped.extend(d for d in dropped if d not in ctx.dropped)
            log.debug(
                "request %s: dropped for %s: %s", ctx.request_id, target.deployment.id, ", ".join(dropped)
            )
        stream = bool(body.get("stream"))
        upstream = UpstreamCall(
            target,
            "/chat/completions",
            orjson.dumps(openai_body),
            openai_forwardable_headers(headers),
            stream=stream and not compacting,
        )
        reply = await self.send(upstream)
        if not 200 <= reply.status < 300:
            return self._error(ctx, reply)
        if reply.source is not None:
            return self._stream(ctx, body, reply, target)
        message = self._message(ctx, body, reply, target)
        if compacting:
            message = as_compaction(message)
        if stream:  # the server answered a stream request with JSON: replay it as events
            return UpstreamReply(200, dict(_SSE_HEADERS), source=FrameSource(message_frames(message)))
        return UpstreamReply(200, _reply_headers(reply, "application/json"), body=orjson.dumps(message))

    def _error(self, ctx: RequestContext, reply: UpstreamReply) -> UpstreamReply:
        status, payload, headers = translate_error(reply.status, reply.body, reply.headers, ctx.request_id)
        error = orjson.loads(payload)["error"]
        ctx.error_type, ctx.error_message = error["type"], error["message"]
        if "x-request-id" in reply.headers:
            headers["request-id"] = reply.headers["x-request-id"]
        return UpstreamReply(status, headers, body=payload)

    def _message(
        self, ctx: RequestContext, body: dict[str, Any], reply: UpstreamReply, target: Target
    ) -> dict:
        try:
            completion = orjson.loads(reply.body or b"")
        except orjson.JSONDecodeError:
            completion = None
        if not isinstance(completion, dict) or not isinstance(completion.get("choices"), list):
            raise GatewayError(502, "upstream returned a reply that is not a chat completion", "api_error")
        message, notes = to_anthropic_message(
            completion,
            model=target.upstream_model,
            max_tokens=body.get("max_tokens"),
            stop_sequences=body.get("stop_sequences") or (),
            input_estimate=0 if isinstance(completion.get("usage"), dict) else count_request_tokens(body),
        )
        ctx.usage.update(message["usage"])
        ctx.usage.estimated = "usage_estimated" in notes
        ctx.stop_reason, ctx.response_model = message.get("stop_reason"), completion.get("model")
        report_notes(ctx, notes)
        return message

    def _stream(
        self, ctx: RequestContext, body: dict[str, Any], reply: UpstreamReply, target: Target
    ) -> UpstreamReply:
        source = reply.source
        assert source is not None
        machine = OpenAIStreamTranslator(
            model=target.upstream_model,
            max_tokens=body.get("max_tokens"),
            stop_sequences=body.get("stop_sequences") or (),
            input_estimate=count_request_tokens(body),
        )
        return UpstreamReply(
            200,
            _reply_headers(reply, _SSE_HEADERS["content-type"]),
            source=TranslatingSource(source, machine, ctx),
        )


def as_compaction(message: dict[str, Any]) -> dict[str, Any]:
    """A summary the backend wrote, as the reply to a compaction request: one `compaction` block."""
    summary = "\n\n".join(b["text"] for b in message["content"] if b.get("type") == "text" and b.get("text"))
    return dict(
        message,
        content=[{"type": "compaction", "content": summary or None, "encrypted_content": None}],
        stop_reason="compaction",
        stop_sequence=None,
    )


def _reply_headers(reply: UpstreamReply, content_type: str) -> dict[str, str]:
    headers = {"content-type": content_type}
    if content_type.startswith("text/event-stream"):
        headers["cache-control"] = "no-cache"
    if "x-request-id" in reply.headers:
        headers["request-id"] = reply.headers["x-request-id"]  # shown as upstream-request-id
    return headers
