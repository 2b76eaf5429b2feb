"""OpenAI Chat Completions through the hub, for deployments that do not speak OpenAI natively.

The request is translated to the hub shape (`translate.chat_request`) and handed to the
deployment's provider like any Messages request; the hub reply is turned back into a
`chat.completion` (JSON) or `chat.completion.chunk` frames ending in `data: [DONE]`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from parley.core.anthropic_stream import message_events
from parley.core.context import RequestContext
from parley.core.deployment import Target
from parley.core.errors import GatewayError
from parley.core.sse import OPENAI_DONE_FRAME, SSEDecoder, encode_data
from parley.core.stream import ChunkSource, FrameSource, UpstreamReply, WrappedSource
from parley.providers.anthropic import forwardable_headers
from parley.providers.base import HubCall, Provider
from parley.translate.chat_errors import openai_error_reply, openai_stream_error
from parley.translate.chat_request import ChatPlan, to_anthropic
from parley.translate.chat_response import to_chat_completion
from parley.translate.chat_stream import ChatStreamTranslator

# Models without `output_config.format` (structured outputs): response_format uses a forced tool.
_NO_NATIVE_JSON = re.compile(r"claude-(instant|2|3)|claude-(opus|sonnet)-4(-\d{8}|$|@)")
# Headers an OpenAI SDK sends that mean nothing to Anthropic.
_CLIENT_ONLY = ("openai-", "x-stainless-")
_DROP = frozenset({"user-agent", "accept", "content-type"})
STREAM_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


def native_json(target: Target) -> bool:
    """Whether the deployment takes `output_config.format`; `supports_response_schema` overrides."""
    flag = target.deployment.params.get("supports_response_schema")
    if isinstance(flag, bool):
        return flag
    return _NO_NATIVE_JSON.search(target.upstream_model) is None


def upstream_headers(headers: Mapping[str, str], plan: ChatPlan) -> dict[str, str]:
    """Client headers worth sending to Anthropic, plus the betas the translation needs."""
    out = {
        k: v
        for k, v in forwardable_headers(headers).items()
        if k not in _DROP and not k.startswith(_CLIENT_ONLY)
    }
    out.update(plan.headers)
    if plan.betas:
        present = [b.strip() for b in out.get("anthropic-beta", "").split(",") if b.strip()]
        out["anthropic-beta"] = ",".join(present + [b for b in plan.betas if b not in present])
    return out


async def chat_via_hub(
    ctx: RequestContext, provider: Provider, target: Target, body: dict[str, Any], headers: Mapping[str, str]
) -> UpstreamReply:
    """Send a chat request to `provider` as a hub request and answer in Chat Completions' shape."""
    request, plan = to_anthropic(body, target.upstream_model, native_json=native_json(target))
    ctx.dropped.extend(d for d in plan.dropped if d not in ctx.dropped)
    reply = await provider.messages(ctx, HubCall(target, request, None, upstream_headers(headers, plan)))
    keep = {k: v for k, v in reply.headers.items() if k == "request-id"}
    if reply.source is not None:
        return UpstreamReply(
            reply.status, {**STREAM_HEADERS, **keep}, source=ChatTranslatingSource(reply.source, plan, ctx)
        )
    if reply.status >= 400:
        status, payload, kept, type_, text = openai_error_reply(reply.status, reply.body, reply.headers)
        ctx.error_type, ctx.error_message = type_, text
        return UpstreamReply(status, {"content-type": "application/json", **kept, **keep}, body=payload)
    message = _message(reply.body)
    ctx.usage.update(message.get("usage"))
    if plan.stream:  # the backend answered a stream request with JSON: replay it as chunks
        return UpstreamReply(200, {**STREAM_HEADERS, **keep}, source=_replay(message, plan, ctx))
    completion = to_chat_completion(message, plan)
    return UpstreamReply(200, {"content-type": "application/json", **keep}, body=orjson.dumps(completion))


def _message(body: bytes | None) -> dict[str, Any]:
    try:
        message = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        message = None
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise GatewayError(502, "upstream returned an invalid Messages reply", "api_error")
    return message


def _replay(message: dict[str, Any], plan: ChatPlan, ctx: RequestContext) -> ChunkSource:
    source = ChatTranslatingSource(FrameSource([]), plan, ctx)
    frames = [source.translate(name, payload) for name, payload in message_events(message)]
    source.inner = FrameSource([b"".join(frames)])
    return source


class ChatTranslatingSource(WrappedSource):
    """Anthropic SSE bytes in, OpenAI chunk frames out; usage is recorded on the request context.

    `next_chunk` only awaits the upstream read, so cancelling it loses no translated output.
    """

    __slots__ = ("ctx", "decoder", "ended", "translator")
    at_boundary = True  # every chunk returned holds whole frames
    at_eof = False  # the end is known only when the upstream ends (an error may follow)

    def __init__(self, inner: ChunkSource, plan: ChatPlan, ctx: RequestContext) -> None:
        super().__init__(inner)
        self.decoder = SSEDecoder()
        self.translator = ChatStreamTranslator(plan)
        self.ctx = ctx
        self.ended = False

    async def next_chunk(self) -> bytes | None:
        if self.ended:
            return None
        chunk = await self.inner.next_chunk()
        if chunk is None:
            self.ended = True
            out = b"".join(self._event(e.event, e.data) for e in self.decoder.flush())
            return out + self._unfinished() or None
        return b"".join(self._event(e.event, e.data) for e in self.decoder.feed(chunk))

    def _event(self, name: str | None, data: str) -> bytes:
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return b""
        return self.translate(name, payload) if isinstance(payload, dict) else b""

    def translate(self, name: str | None, payload: dict[str, Any]) -> bytes:
        translator, ctx = self.translator, self.ctx
        name = name or payload.get("type")
        if name == "message_start":
            ctx.usage.update((payload.get("message") or {}).get("usage"))
        elif name == "message_delta":
            ctx.usage.update(payload.get("usage"))
        was_finished = translator.finished
        out = b"".join(encode_data(c) for c in translator.feed(name, payload))
        if name == "error":
            given = payload.get("error")
            error: dict[str, Any] = given if isinstance(given, dict) else {}
            ctx.error_type = ctx.error_type or error.get("type") or "api_error"
            ctx.error_message = error.get("message")
        elif translator.finished and not was_finished:
            out += OPENAI_DONE_FRAME
        return out

    def _unfinished(self) -> bytes:
        if self.translator.finished or self.translator.failed:
            return b""
        self.ctx.error_type = self.ctx.error_type or "api_error"
        self.ctx.error_message = "upstream stream ended before message_stop"
        return encode_data(openai_stream_error("api_error", self.ctx.error_message))
