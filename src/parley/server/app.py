"""Build the Starlette application around one Gateway."""

from __future__ import annotations

import contextlib
import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from parley.admin.common import JSONBytes
from parley.config import Config
from parley.core.context import new_request_id
from parley.core.errors import anthropic_error_body, anthropic_type_for_status
from parley.gateway import Gateway, build_gateway
from parley.server.api import ApiRoutes
from parley.server.batches import BatchRoutes
from parley.server.guardrails import GuardrailRoutes
from parley.server.health import Readiness
from parley.server.models import ModelRoutes
from parley.server.observability import ObservabilityRoutes
from parley.server.openai_batches import OpenAIBatchRoutes
from parley.server.ui import ui_routes
from parley.server.vector_stores import VectorStoreRoutes

log = logging.getLogger("parley")


def create_app(config: Config, gateway: Gateway | None = None) -> Starlette:
    gw = gateway or build_gateway(config)
    models = ModelRoutes(gw)
    routes = [
        Route("/", root, methods=["GET", "HEAD"]),
        Route("/health/liveness", liveness, methods=["GET"]),
        Route("/health/readiness", Readiness(gw).check, methods=["GET"]),
        Route("/v1/models", models.list, methods=["GET"]),
        Route("/v1/models/{model_id:path}", models.get, methods=["GET"]),
        Route("/model/info", models.info, methods=["GET"]),
        Route("/v1/model/info", models.info, methods=["GET"]),
        Route("/guardrails/list", GuardrailRoutes(gw).list, methods=["GET"]),
        *ApiRoutes(gw).routes(),
        *BatchRoutes(gw).routes(),
        *OpenAIBatchRoutes(gw).routes(),
        *VectorStoreRoutes(gw).routes(),
        *ui_routes(),
        *ObservabilityRoutes(gw).routes(),
    ]
    if gw.store is not None:
        from parley.admin.routes import admin_routes

        routes.extend(admin_routes(gw.store))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: unexpected_error},
    )
    app.state.gateway = gw
    return app


async def root(request: Request) -> Response:
    return JSONBytes({"status": "ok", "service": "parley"}, headers={"request-id": new_request_id()})


async def liveness(request: Request) -> Response:
    return JSONBytes({"status": "healthy"}, headers={"request-id": new_request_id()})


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # registered for HTTPException only
    request_id = new_request_id()
    message = {
        404: f"not found: {request.method} {request.url.path}",
        405: f"method {request.method} not allowed on {request.url.path}",
    }.get(exc.status_code, str(exc.detail))
    return JSONBytes(
        anthropic_error_body(anthropic_type_for_status(exc.status_code), message, request_id),
        status_code=exc.status_code,
        headers={"request-id": request_id},
    )


async def unexpected_error(request: Request, exc: Exception) -> Response:
    request_id = new_request_id()
    log.exception("unexpected error on %s %s (request %s)", request.method, request.url.path, request_id)
    return JSONBytes(
        anthropic_error_body(
            "api_error", f"internal gateway error; see the gateway log for request {request_id}", request_id
        ),
        status_code=500,
        headers={"request-id": request_id},
    )
