"""The client-facing API routes: each builds its endpoint and lets the pipeline run it."""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope

from parley.core.context import RequestContext
from parley.core.errors import GatewayError
from parley.gateway import Gateway
from parley.pipeline.chat import ChatEndpoint
from parley.pipeline.embeddings import EmbeddingsEndpoint
from parley.pipeline.lifecycle import Endpoint
from parley.pipeline.messages import MessagesEndpoint
from parley.pipeline.passthrough import METHODS, PassthroughEndpoint
from parley.server.body import RequestHeaders, receive_body
from parley.server.cloud import CloudRoutes
from parley.server.relay import RelayResponse

# Headers larger than this are refused before anything reads them (Anthropic's own limit is lower).
MAX_HEADER_BYTES = 64 * 1024


class ApiRoutes:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.pipeline = gateway.pipeline
        self.messages_endpoint = MessagesEndpoint(gateway.pipeline)  # no per-request state
        self.chat_endpoint = ChatEndpoint(gateway.pipeline)
        self.embeddings_endpoint = EmbeddingsEndpoint(gateway.pipeline)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/messages", self.messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"]),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            Route("/embeddings", self.embeddings, methods=["POST"]),
            Route("/anthropic/{path:path}", self.passthrough, methods=METHODS),
            *CloudRoutes(self.pipeline, self._run_request).routes(),
        ]

    # The hot routes (server/hot.py) call these with the ASGI scope; each returns the ASGI response.
    def hot_messages(self, scope: Scope, receive: Receive) -> Awaitable[RelayResponse]:
        query = scope["query_string"]
        if query:
            return self._run(MessagesEndpoint(self.pipeline, query=query.decode("latin-1")), scope, receive)
        return self._run(self.messages_endpoint, scope, receive)

    def hot_chat(self, scope: Scope, receive: Receive) -> Awaitable[RelayResponse]:
        return self._run(self.chat_endpoint, scope, receive)

    async def messages(self, request: Request) -> Response:
        return await self.hot_messages(request.scope, request.receive)  # type: ignore[return-value]

    async def count_tokens(self, request: Request) -> Response:
        endpoint = MessagesEndpoint(self.pipeline, count_tokens=True, query=_query(request))
        return await self._run_request(endpoint, request)

    async def chat(self, request: Request) -> Response:
        return await self._run_request(self.chat_endpoint, request)

    async def embeddings(self, request: Request) -> Response:
        return await self._run_request(self.embeddings_endpoint, request)

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
        return await self._run_request(endpoint, request)

    async def _run_request(self, endpoint: Endpoint, request: Request) -> Response:
        return await self._run(endpoint, request.scope, request.receive)  # type: ignore[return-value]

    async def _run(self, endpoint: Endpoint, scope: Scope, receive: Receive) -> RelayResponse:
        headers = RequestHeaders(scope["headers"])
        ctx = RequestContext(api=endpoint.api, route=endpoint.route, headers=headers)
        if headers.size > MAX_HEADER_BYTES:
            outcome = self.pipeline.refusal(endpoint, ctx, _headers_too_large())
        else:
            outcome = await self.pipeline.run(
                endpoint, ctx, lambda limit: receive_body(receive, headers, limit)
            )
        return RelayResponse(self.pipeline, endpoint, ctx, outcome)


def _headers_too_large() -> GatewayError:
    return GatewayError(
        431,
        f"request headers exceed the gateway's limit of {MAX_HEADER_BYTES} bytes",
        "invalid_request_error",
    )


def _query(request: Request) -> str:
    return request.scope["query_string"].decode("latin-1")
