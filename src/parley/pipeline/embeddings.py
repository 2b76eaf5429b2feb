"""The OpenAI Embeddings front door: `/v1/embeddings` (and `/embeddings`).

Routed like any model: a `local/` deployment embeds in process (the built-in model), an
OpenAI-compatible deployment gets the client's bytes (model rewritten). Errors in OpenAI's envelope.
"""

from __future__ import annotations

from typing import Any

from parley.core.context import RequestContext
from parley.core.deployment import Target
from parley.core.errors import GatewayError, invalid_request
from parley.core.stream import UpstreamReply
from parley.pipeline.body import parse_object
from parley.pipeline.lifecycle import Endpoint, Pipeline
from parley.pipeline.messages import reply_headers
from parley.pipeline.metadata import apply_request_metadata
from parley.providers.local_embed import LocalEmbedProvider
from parley.providers.openai import OpenAIProvider

ENCODINGS = ("float", "base64")


class EmbeddingsEndpoint(Endpoint):
    api = "openai"
    route = "/v1/embeddings"

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def parse(self, ctx: RequestContext, raw: bytes) -> dict[str, Any]:
        body = parse_object(raw)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise invalid_request("model: Field required (a non-empty string)", param="model")
        if "input" not in body:
            raise invalid_request("input: Field required", param="input")
        if body.get("encoding_format", "float") not in ENCODINGS:
            raise invalid_request('encoding_format: must be "float" or "base64"', param="encoding_format")
        ctx.model = model
        return body

    def prepare(self, ctx: RequestContext, body: dict[str, Any] | None) -> None:
        assert body is not None
        ctx.targets = self.pipeline.router.targets(body["model"], ctx.allowed_models)
        apply_request_metadata(ctx, body)

    async def send(self, ctx: RequestContext, body: dict[str, Any] | None, raw: bytes) -> UpstreamReply:
        assert body is not None
        providers = self.pipeline.providers

        async def attempt(target: Target) -> UpstreamReply:
            provider = providers[target.deployment.api]
            if isinstance(provider, LocalEmbedProvider):
                return await provider.embeddings(ctx, target, body)
            if isinstance(provider, OpenAIProvider):
                return await provider.embeddings(ctx, target, body, raw or None)
            raise GatewayError(
                400,
                f"model {body['model']!r} is served by a {target.deployment.api} backend, "
                "which has no embeddings API here",
                "invalid_request_error",
            )

        return await self.pipeline.router.run(ctx, body["model"], attempt)

    def reply_headers(self, ctx: RequestContext, reply: UpstreamReply) -> dict[str, str]:
        headers = reply_headers(ctx, reply.headers)
        headers["x-request-id"] = ctx.request_id
        return headers

    def error_body(self, ctx: RequestContext, error: GatewayError) -> bytes:
        return error.openai_body()
