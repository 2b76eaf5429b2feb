"""Gemini backends: the Gemini API (AI Studio, `gemini/...`, API key) and, through `generate`, Gemini
on Vertex AI (`vertex_ai/gemini-*`, OAuth; see `vertex`).

A hub request becomes a `generateContent` call (`streamGenerateContent?alt=sse` when streamed) via
`parley.translate.gemini`; the reply, whole or streamed, comes back as an Anthropic Message. Google
error envelopes become Anthropic ones naming the backend. count_tokens is the local estimate
(Gemini's countTokens counts a different tokenizer's tokens for the same text anyway).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from parley.core.anthropic_stream import message_frames
from parley.core.context import RequestContext
from parley.core.errors import GatewayError
from parley.core.stream import FrameSource, UpstreamReply
from parley.core.tokens import count_request_tokens
from parley.providers.base import HubCall
from parley.providers.openai_streams import TranslatingSource
from parley.translate.gemini.errors import google_error_reply
from parley.translate.gemini.request import to_gemini_request
from parley.translate.gemini.response import to_anthropic_message
from parley.translate.gemini.stream import GeminiStreamTranslator
from parley.transport.http import HttpClient

log = logging.getLogger("parley.providers.gemini")

AI_STUDIO_VERSION = "v1beta"  # has every field used here on every model; `api_version: v1` for GA only
_SSE = "text/event-stream; charset=utf-8"


def local_count(call: HubCall) -> UpstreamReply:
    payload = {"input_tokens": count_request_tokens(call.body)}
    return UpstreamReply(200, {"content-type": "application/json"}, body=orjson.dumps(payload))


async def generate(
    http: HttpClient,
    ctx: RequestContext,
    call: HubCall,
    model_url: str,
    auth: dict[str, str],
    backend: str,
) -> UpstreamReply:
    """Send `call` to the Gemini model at `model_url` (…/models/NAME) and translate the reply."""
    body, dropped = to_gemini_request(call.body)
    if call.headers.get("anthropic-beta"):
        dropped.append("anthropic-beta")
    if dropped:
        ctx.dropped.extend(d for d in dropped if d not in ctx.dropped)
        log.debug("request %s: dropped for %s: %s", ctx.request_id, backend, ", ".join(dropped))
    dep = call.target.deployment
    headers = {"content-type": "application/json", **auth, **dep.extra_headers}
    url = model_url + (":streamGenerateContent?alt=sse" if call.stream else ":generateContent")
    reply = await http.send(
        "POST", url, headers, orjson.dumps(body), dep.timeout, call.stream, dep.params.get("connect_timeout")
    )
    if not 200 <= reply.status < 300:
        return google_error(ctx, reply, backend)
    model = call.body["model"]
    if reply.source is not None:
        machine = GeminiStreamTranslator(
            model=model,
            input_estimate=count_request_tokens(call.body),
            backend=backend,
        )
        return UpstreamReply(
            200,
            {"content-type": _SSE, "cache-control": "no-cache"},
            source=TranslatingSource(reply.source, machine, ctx),
        )
    whole = _message(ctx, reply, model, backend)
    if call.stream:  # answered with JSON although a stream was asked for: replay it as events
        return UpstreamReply(200, {"content-type": _SSE}, source=FrameSource(message_frames(whole)))
    return UpstreamReply(200, {"content-type": "application/json"}, body=orjson.dumps(whole))


def google_error(ctx: RequestContext, reply: UpstreamReply, backend: str) -> UpstreamReply:
    """A Google error reply as Anthropic's, recorded on the context (retry-after kept)."""
    status, kind, message, payload = google_error_reply(backend, reply.status, reply.body, ctx.request_id)
    ctx.error_type, ctx.error_message = kind, message
    headers = {"content-type": "application/json"}
    if "retry-after" in reply.headers:
        headers["retry-after"] = reply.headers["retry-after"]
    return UpstreamReply(status, headers, body=payload)


def _message(ctx: RequestContext, reply: UpstreamReply, model: str, backend: str) -> dict[str, Any]:
    try:
        data = orjson.loads(reply.body or b"")
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or not ("candidates" in data or "promptFeedback" in data):
        snippet = (reply.body or b"")[:200].decode("utf-8", "replace")
        raise GatewayError(
            502, f"{backend} returned a reply that is not a GenerateContentResponse: {snippet!r}"
        )
    message = to_anthropic_message(data, model)
    ctx.usage.update(message["usage"])
    if not isinstance(data.get("usageMetadata"), dict):
        ctx.usage.estimated = True
    return message


class GeminiProvider:
    """The Gemini API (AI Studio): `x-goog-api-key`, `{api_base}/{api_version}/models/NAME`."""

    api = "gemini"

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    async def messages(self, ctx: RequestContext, call: HubCall) -> UpstreamReply:
        if call.count_tokens:
            return local_count(call)
        dep = call.target.deployment
        version = dep.params.get("api_version") or AI_STUDIO_VERSION
        url = f"{dep.api_base}/{version}/models/{call.target.upstream_model}"
        auth = {"x-goog-api-key": dep.api_key} if dep.api_key else {}
        return await generate(self.http, ctx, call, url, auth, "Gemini API")
