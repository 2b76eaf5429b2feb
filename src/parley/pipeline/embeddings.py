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
from parley.pipeline.chat import ChatEndpoint
from parley.providers.local_embed import LocalEmbedProvider
from parley.providers.openai import OpenAIProvider

ENCODINGS = ("float", "base64")


class EmbeddingsEndpoint(ChatEndpoint):
    """The chat endpoint's parsing, routing, headers and OpenAI errors; its own checks and send."""

    route = "/v1/embeddings"

    def check(self, ctx: RequestContext, body: dict[str, Any]) -> None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise invalid_request("model: Field required (a non-empty string)", param="model")
        if "input" not in body:
            raise invalid_request("input: Field required", param="input")
        if body.get("encoding_format", "float") not in ENCODINGS:
            raise invalid_request('encoding_format: must be "float" or "base64"', param="encoding_format")
        ctx.model = model

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
