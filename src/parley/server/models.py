"""`GET /v1/models` and `GET /v1/models/{id}`, in a shape both SDKs accept."""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request
from starlette.responses import Response

from parley.core.context import RequestContext
from parley.core.errors import GatewayError
from parley.gateway import Gateway
from parley.server.responses import JSONBytes, anthropic_error

_EPOCH = 1735689600  # 2025-01-01T00:00:00Z: configured models have no real creation date


def model_object(name: str, owner: str) -> dict:
    return {
        "type": "model",
        "id": name,
        "display_name": name,
        "created_at": dt.datetime.fromtimestamp(_EPOCH, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "object": "model",
        "created": _EPOCH,
        "owned_by": owner,
    }


class ModelRoutes:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    def _models(self) -> list[dict]:
        owners = {d.model_name: d.provider for d in self.gw.table.deployments}
        return [model_object(name, owners.get(name, "parley")) for name in self.gw.table.names()]

    async def list(self, request: Request) -> Response:
        ctx = RequestContext(api="anthropic", route="/v1/models", headers=request.headers)
        try:
            await self.gw.pipeline.auth.authenticate(ctx)
        except GatewayError as error:
            return anthropic_error(ctx, error)
        data = self._models()
        limit = request.query_params.get("limit")
        after = request.query_params.get("after_id")
        before = request.query_params.get("before_id")
        ids = [m["id"] for m in data]
        if after in ids:
            data = data[ids.index(after) + 1 :]
        elif before in ids:
            data = data[: ids.index(before)]
        size = int(limit) if limit and limit.isdigit() and 0 < int(limit) <= 1000 else 1000
        page, has_more = data[:size], len(data) > size
        body = {
            "object": "list",
            "data": page,
            "has_more": has_more,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        }
        return JSONBytes(body, headers={"request-id": ctx.request_id})

    async def get(self, request: Request) -> Response:
        ctx = RequestContext(api="anthropic", route="/v1/models/{id}", headers=request.headers)
        try:
            await self.gw.pipeline.auth.authenticate(ctx)
            model_id = request.path_params["model_id"]
            for model in self._models():
                if model["id"] == model_id:
                    return JSONBytes(model, headers={"request-id": ctx.request_id})
            if self.gw.table.resolve(model_id):  # served through a wildcard
                return JSONBytes(model_object(model_id, "parley"), headers={"request-id": ctx.request_id})
            raise GatewayError(404, f"model: {model_id!r} is not served here", "not_found_error")
        except GatewayError as error:
            return anthropic_error(ctx, error)
