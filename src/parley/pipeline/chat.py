"""The OpenAI Chat Completions front door: `/v1/chat/completions` (and `/chat/completions`).

Deployments that speak OpenAI get the client's bytes (model rewritten; usage read on the side);
every other deployment is reached through the hub (`chat_hub`). Errors use OpenAI's envelope,
streams OpenAI's framing (`: ping` comments as keep-alive, `data: {"error": ...}` after the 200).
"""

from __future__ import annotations

from typing import Any

from parley.core.context import RequestContext
from parley.core.deployment import Target
from parley.core.errors import GatewayError
from parley.core.sse import encode_data
from parley.core.stream import UpstreamReply
from parley.pipeline.body import check_chat_request, parse_object
from parley.pipeline.chat_hub import chat_via_hub
from parley.pipeline.lifecycle import Endpoint, Pipeline
from parley.pipeline.messages import reply_headers
from parley.pipeline.metadata import apply_request_metadata
from parley.providers.openai import OpenAIProvider
from parley.translate.chat_errors import openai_stream_error

OPENAI_PING_FRAME = b": ping\n\n"


class ChatEndpoint(Endpoint):
    api = "openai"
    route = "/v1/chat/completions"
    ping_frame = OPENAI_PING_FRAME

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def parse(self, ctx: RequestContext, raw: bytes) -> dict[str, Any]:
        body = parse_object(raw)
        self.check(ctx, body)
        return body

    def check(self, ctx: RequestContext, body: dict[str, Any]) -> None:
        check_chat_request(body)
        ctx.model = body["model"]
        ctx.stream = body.get("stream") is True

    def prepare(self, ctx: RequestContext, body: dict[str, Any] | None) -> None:
        assert body is not None
        ctx.targets = self.pipeline.router.targets(body["model"], ctx.allowed_models)  # 404 before any filter
        apply_request_metadata(ctx, body)

    async def send(self, ctx: RequestContext, body: dict[str, Any] | None, raw: bytes) -> UpstreamReply:
        assert body is not None
        providers = self.pipeline.providers

        async def attempt(target: Target) -> UpstreamReply:
            provider = providers[target.deployment.api]
            if isinstance(provider, OpenAIProvider):
                return await provider.chat(ctx, target, body, raw or None, ctx.headers)
            return await chat_via_hub(ctx, provider, target, body, ctx.headers)

        return await self.pipeline.router.run(ctx, body["model"], attempt)

    def reply_headers(self, ctx: RequestContext, reply: UpstreamReply) -> dict[str, str]:
        headers = reply_headers(ctx, reply.headers)
        headers["x-request-id"] = ctx.request_id
        return headers

    def error_body(self, ctx: RequestContext, error: GatewayError) -> bytes:
        return error.openai_body()

    def error_frame(self, ctx: RequestContext, type_: str, message: str) -> bytes:
        return encode_data(openai_stream_error(type_, message))
