"""Routes of the Bedrock InvokeModel and Vertex rawPredict front doors (see `pipeline/cloud.py`).

Bedrock: `POST /model/{model}/invoke`, `/invoke-with-response-stream` and `/count-tokens` (the
model id may be an ARN: the path is percent-decoded first). Vertex: `POST /v1/projects/{p}/
locations/{l}/publishers/anthropic/models/{model}:rawPredict`, `:streamRawPredict`, and
`.../models/count-tokens:rawPredict`. Both also answer under `/bedrock` and `/vertex_ai` (the
prefixes LiteLLM users already have in their Claude Code settings).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from parley.core.context import RequestContext
from parley.core.errors import GatewayError
from parley.pipeline.cloud import BedrockCountEndpoint, BedrockEndpoint, VertexEndpoint
from parley.pipeline.lifecycle import Endpoint, Pipeline

Run = Callable[[Endpoint, Request], Awaitable[Response]]
VERTEX_MODELS = "/v1/projects/{project}/locations/{location}/publishers/anthropic/models/{target}"
_VERTEX_METHODS = {"rawPredict": False, "streamRawPredict": True}


class CloudRoutes:
    def __init__(self, pipeline: Pipeline, run: Run) -> None:
        self.pipeline = pipeline
        self.run = run

    def routes(self) -> list[Route]:
        routes = []
        for prefix in ("", "/bedrock"):
            model = prefix + "/model/{model:path}"
            routes.append(Route(model + "/invoke", self.invoke, methods=["POST"]))
            routes.append(Route(model + "/invoke-with-response-stream", self.stream, methods=["POST"]))
            routes.append(Route(model + "/count-tokens", self.count, methods=["POST"]))
        for prefix in ("", "/vertex_ai"):
            routes.append(Route(prefix + VERTEX_MODELS, self.vertex, methods=["POST"]))
        return routes

    async def invoke(self, request: Request) -> Response:
        model = request.path_params["model"]
        endpoint = BedrockEndpoint(self.pipeline, "/model/{model}/invoke", model, False)
        return await self.run(endpoint, request)

    async def stream(self, request: Request) -> Response:
        model = request.path_params["model"]
        route = "/model/{model}/invoke-with-response-stream"
        return await self.run(BedrockEndpoint(self.pipeline, route, model, True), request)

    async def count(self, request: Request) -> Response:
        return await self.run(BedrockCountEndpoint(self.pipeline, request.path_params["model"]), request)

    async def vertex(self, request: Request) -> Response:
        model, _, method = request.path_params["target"].rpartition(":")
        endpoint: Endpoint
        if model == "count-tokens" and method == "rawPredict":
            route = VERTEX_MODELS.replace("{target}", "count-tokens:rawPredict")
            endpoint = VertexEndpoint(self.pipeline, route, None, False, count_tokens=True)
        elif model and method in _VERTEX_METHODS:
            route = VERTEX_MODELS.replace("{target}", "{model}:" + method)
            endpoint = VertexEndpoint(self.pipeline, route, model, _VERTEX_METHODS[method])
        else:
            endpoint = _NotFound(f"no Vertex method {request.path_params['target']!r} here")
        return await self.run(endpoint, request)


class _NotFound(Endpoint):
    """An unknown Vertex method: a 404 in the Messages envelope, after authentication."""

    route = VERTEX_MODELS

    def __init__(self, message: str) -> None:
        self.message = message

    def parse(self, ctx: RequestContext, raw: bytes) -> dict[str, Any] | None:
        raise GatewayError(404, self.message, "not_found_error")
