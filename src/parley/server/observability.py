"""`GET /metrics` (Prometheus exposition) and `GET /health` (each deployment checked, LiteLLM's shape)."""

from __future__ import annotations

import asyncio
import hmac

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from parley.admin.common import JSONBytes
from parley.core.context import new_request_id
from parley.core.errors import anthropic_error_body
from parley.gateway import Gateway
from parley.pipeline.filter import client_key


class ObservabilityRoutes:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    def routes(self) -> list[Route]:
        routes = [Route("/health", self.health, methods=["GET"])]
        if self.gw.metrics is not None:
            routes.append(Route("/metrics", self.metrics, methods=["GET"]))
        return routes

    async def metrics(self, request: Request) -> Response:
        metrics = self.gw.metrics
        assert metrics is not None  # the route exists only with metrics on
        if metrics.require_key and (denied := self._denied(request)) is not None:
            return denied
        metrics.sample()  # on the event loop, where every update happens: the render only reads
        body, content_type = await asyncio.to_thread(metrics.render)  # reads every worker's files
        return Response(body, media_type=content_type)

    async def health(self, request: Request) -> Response:
        """Calls every deployment (at most once per health_check_interval): master key only."""
        if (denied := self._denied(request)) is not None:
            return denied
        report = await self.gw.model_health.report()
        return JSONBytes(report, headers={"request-id": new_request_id()})

    def _denied(self, request: Request) -> Response | None:
        master = self.gw.config.general.master_key
        if master is None:
            return None
        key = client_key(request.headers)
        if key is not None and hmac.compare_digest(key.encode(), master.encode()):
            return None
        request_id = new_request_id()
        return JSONBytes(
            anthropic_error_body("authentication_error", "this endpoint needs the master key", request_id),
            status_code=401,
            headers={"request-id": request_id},
        )
