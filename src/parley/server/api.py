"""The client-facing API routes: each builds its endpoint and lets the pipeline run it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from parley.core.context import RequestContext
from parley.gateway import Gateway
from parley.pipeline.chat import ChatEndpoint
from parley.pipeline.lifecycle import Endpoint
from parley.pipeline.messages import MessagesEndpoint
from parley.pipeline.passthrough import METHODS, PassthroughEndpoint
from parley.server.body import read_body
from parley.server.relay import RelayResponse


class ApiRoutes:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.pipeline = gateway.pipeline
        self.chat_endpoint = ChatEndpoint(gateway.pipeline)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/messages", self.messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"]),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/chat/completions", self.chat, methods=["POST"]),
            Route("/anthropic/{path:path}", self.passthrough, methods=METHODS),
        ]

    async def messages(self, request: Request) -> Response:
        return await self._run(MessagesEndpoint(self.pipeline, query=_query(request)), request)

    async def count_tokens(self, request: Request) -> Response:
        endpoint = MessagesEndpoint(self.pipeline, count_tokens=True, query=_query(request))
        return await self._run(endpoint, request)

    async def chat(self, request: Request) -> Response:
        return await self._run(self.chat_endpoint, request)

    async def passthrough(self, request: Request) -> Response:
        gw = self.gw
        endpoint = PassthroughEndpoint(
            self.pipeline,
            gw.passthrough,
            gw.http,
            request.method,
            "/" + request.path_params["path"],
            request.url.query,
            str(request.base_url).rstrip("/") + "/anthropic",
        )
        return await self._run(endpoint, request)

    async def _run(self, endpoint: Endpoint, request: Request) -> Response:
        ctx = RequestContext(api=endpoint.api, route=endpoint.route, headers=request.headers)
        outcome = await self.pipeline.run(endpoint, ctx, lambda limit: read_body(request, limit))
        return RelayResponse(self.pipeline, endpoint, ctx, outcome)  # type: ignore[return-value]


def _query(request: Request) -> str:
    return request.scope["query_string"].decode("latin-1")
