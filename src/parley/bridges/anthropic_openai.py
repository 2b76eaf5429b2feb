"""`/v1/messages` on an OpenAI-compatible backend: translate, send, translate back.

Non-streamed replies come back as Anthropic JSON; streamed ones through `TranslatingSource`, which
decodes the upstream SSE, feeds `OpenAIStreamTranslator` and returns Anthropic frames as they
complete. Usage lands in `ctx.usage` (flagged `estimated` when the server sent none), dropped
request fields in `ctx.dropped` (the `x-parley-dropped` header).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import orjson

from parley.core.anthropic_stream import message_frames
from parley.config import ConfigError
from parley.core.context import RequestContext
from parley.core.errors import GatewayError
from parley.core.stream import ChunkSource, UpstreamCall, UpstreamReply
from parley.providers.mock import FrameSource
from parley.providers.openai import openai_forwardable_headers
from parley.core.deployment import Target
from parley.core.sse import SSEDecoder, encode_event
from parley.core.tokens import count_request_tokens
from parley.translate.anthropic_to_openai import to_openai_request
from parley.translate.openai_errors import translate_error
from parley.translate.openai_options import OpenAIOptions, options_from_params
from parley.translate.openai_stream import OpenAIStreamTranslator
from parley.translate.openai_to_anthropic import to_anthropic_message

log = logging.getLogger("parley.bridge.openai")

_SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


def install(gw) -> None:
    bridge = AnthropicOpenAIBridge()
    for dep in gw.config.deployments:  # fail at startup on a bad switch, not at the first request
        if dep.api == "openai":
            try:
                bridge.options(dep)
            except ConfigError as e:
                raise ConfigError(f"model_list entry {dep.model_name!r}: {e}") from None
    gw.bridges[("anthropic", "openai")] = bridge


class AnthropicOpenAIBridge:
    def __init__(self) -> None:
        self._options: dict[str, OpenAIOptions] = {}

    def options(self, deployment) -> OpenAIOptions:
        options = self._options.get(deployment.id)
        if options is None:
            options = options_from_params(deployment.provider, deployment.params)
            self._options[deployment.id] = options
        return options

    async def count_tokens(self, gw, ctx: RequestContext, target: Target, body: dict[str, Any],
                           headers: Mapping[str, str]) -> UpstreamReply:
        """A local estimate: OpenAI-compatible servers have no count_tokens endpoint."""
        payload = {"input_tokens": count_request_tokens(body)}
        return UpstreamReply(200, {"content-type": "application/json"}, body=orjson.dumps(payload))

    async def messages(self, gw, ctx: RequestContext, target: Target, body: dict[str, Any],
                       headers: Mapping[str, str]) -> UpstreamReply:
        openai_body, dropped = to_openai_request(body, self.options(target.deployment),
                                                 target.upstream_model)
        if headers.get("anthropic-beta"):
            dropped.append("anthropic-beta")
        if dropped:
            ctx.dropped.extend(d for d in dropped if d not in ctx.dropped)
            log.debug("request %s: dropped for %s: %s", ctx.request_id, target.deployment.id,
                      ", ".join(dropped))
        stream = bool(body.get("stream"))
        call = UpstreamCall(target, "/chat/completions", orjson.dumps(openai_body),
                            openai_forwardable_headers(headers), stream=stream)
        reply = await gw.provider_for(target.deployment).send(call)
        if not 200 <= reply.status < 300:
            return self._error(ctx, reply)
        if reply.source is not None:
            return self._stream(ctx, body, reply)
        message = self._message(ctx, body, reply)
        if stream:  # the server answered a stream request with JSON: replay it as events
            return UpstreamReply(200, dict(_SSE_HEADERS), source=FrameSource(message_frames(message)))
        return UpstreamReply(200, _reply_headers(reply, "application/json"),
                             body=orjson.dumps(message))

    def _error(self, ctx: RequestContext, reply: UpstreamReply) -> UpstreamReply:
        status, payload, headers = translate_error(reply.status, reply.body, reply.headers,
                                                   ctx.request_id)
        error = orjson.loads(payload)["error"]
        ctx.error_type, ctx.error_message = error["type"], error["message"]
        if "x-request-id" in reply.headers:
            headers["request-id"] = reply.headers["x-request-id"]
        return UpstreamReply(status, headers, body=payload)

    def _message(self, ctx: RequestContext, body: dict[str, Any], reply: UpstreamReply) -> dict:
        try:
            completion = orjson.loads(reply.body or b"")
        except orjson.JSONDecodeError:
            completion = None
        if not isinstance(completion, dict) or not isinstance(completion.get("choices"), list):
            raise GatewayError(502, "upstream returned a reply that is not a chat completion",
                               "api_error")
        message, notes = to_anthropic_message(
            completion, model=body["model"], stop_sequences=body.get("stop_sequences") or (),
            input_estimate=0 if isinstance(completion.get("usage"), dict)
            else count_request_tokens(body))
        ctx.usage.update(message["usage"])
        ctx.usage.estimated = "usage_estimated" in notes
        _report(ctx, notes)
        return message

    def _stream(self, ctx: RequestContext, body: dict[str, Any], reply: UpstreamReply) -> UpstreamReply:
        machine = OpenAIStreamTranslator(model=body["model"],
                                         stop_sequences=body.get("stop_sequences") or (),
                                         input_estimate=count_request_tokens(body))
        return UpstreamReply(200, _reply_headers(reply, _SSE_HEADERS["content-type"]),
                             source=TranslatingSource(reply.source, machine, ctx))


def _reply_headers(reply: UpstreamReply, content_type: str) -> dict[str, str]:
    headers = {"content-type": content_type}
    if content_type.startswith("text/event-stream"):
        headers["cache-control"] = "no-cache"
    if "x-request-id" in reply.headers:
        headers["request-id"] = reply.headers["x-request-id"]  # shown as upstream-request-id
    return headers


def _report(ctx: RequestContext, notes: list[str]) -> None:
    for note in notes:
        if note.startswith("invalid_tool_arguments:"):
            log.warning("request %s: upstream sent tool arguments that are not a JSON object (%s)",
                        ctx.request_id, note.partition(":")[2])
            ctx.extra.setdefault("invalid_tool_arguments", []).append(note.partition(":")[2])
        elif note == "usage_estimated":
            log.info("request %s: upstream reported no usage; tokens estimated", ctx.request_id)


class TranslatingSource:
    """OpenAI SSE bytes in, Anthropic SSE frames out; `next_chunk` only awaits the upstream read."""

    __slots__ = ("inner", "machine", "ctx", "decoder", "_ended")

    def __init__(self, inner: ChunkSource, machine: OpenAIStreamTranslator, ctx: RequestContext) -> None:
        self.inner = inner
        self.machine = machine
        self.ctx = ctx
        self.decoder = SSEDecoder()
        self._ended = False

    at_boundary = True  # every chunk returned is whole frames

    async def next_chunk(self) -> bytes | None:
        if self._ended:
            return None
        chunk = await self.inner.next_chunk()
        if chunk is None:
            events = self.decoder.flush()
        else:
            events = self.decoder.feed(chunk)
        out: list[tuple[str, dict]] = []
        for event in events:
            out.extend(self._event(event.data))
        if chunk is None and not self.machine.finished:
            out.extend(self.machine.finish(done=False))
        if self.machine.finished:
            self._ended = True
            self._settle()
        if not out:
            return b"" if chunk is not None else None
        return b"".join(self._frame(name, payload) for name, payload in out)

    def _event(self, data: str) -> list[tuple[str, dict]]:
        if data == "[DONE]":
            return self.machine.finish(done=True)
        if not data:
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("request %s: ignoring an upstream stream line that is not JSON: %.200s",
                        self.ctx.request_id, data)
            return []
        return self.machine.feed(chunk) if isinstance(chunk, dict) else []

    def _frame(self, name: str, payload: dict) -> bytes:
        ctx = self.ctx
        if name == "message_start":
            ctx.usage.update(payload["message"]["usage"])
        elif name == "message_delta":
            ctx.usage.update(payload["usage"])
        elif name == "error":
            payload = dict(payload, request_id=ctx.request_id)
            ctx.error_type = payload["error"]["type"]
            ctx.error_message = payload["error"]["message"]
        return encode_event(name, payload)

    def _settle(self) -> None:
        self.ctx.usage.estimated = self.machine.estimated
        _report(self.ctx, self.machine.notes)

    def close(self) -> None:
        self.inner.close()

