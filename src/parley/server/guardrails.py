"""`GET /guardrails/list`: the configured guardrails, in LiteLLM's shape (any valid key may ask)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from parley.core.context import RequestContext
from parley.core.errors import GatewayError
from parley.gateway import Gateway
from parley.server.responses import JSONBytes, anthropic_error


class GuardrailRoutes:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def list(self, request: Request) -> Response:
        ctx = RequestContext(api="anthropic", route="/guardrails/list", headers=request.headers)
        try:
            await self.gw.pipeline.auth.authenticate(ctx)
        except GatewayError as error:
            return anthropic_error(ctx, error)
        body = {"guardrails": [spec.public() for spec in self.gw.config.guardrails]}
        return JSONBytes(body, headers={"request-id": ctx.request_id})
