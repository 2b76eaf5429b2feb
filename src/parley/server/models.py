"""Model discovery: `GET /v1/models` and `/v1/models/{id}` in a shape both SDKs accept (and Claude
Code's gateway discovery reads), and LiteLLM's `GET /model/info` (also under `/v1`).

Each key sees only the models it may use. Wildcard entries of `model_list` are not listed (no
client could guess their names), but a name the key is allowed explicitly and that a wildcard
serves is. `model_info.display_name`, `max_input_tokens` and `max_output_tokens` fill the
Models API's `display_name`, `max_input_tokens` and `max_tokens`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from parley.core.context import RequestContext
from parley.core.deployment import Deployment, ModelCard
from parley.core.errors import GatewayError
from parley.filters.virtual_keys import model_allowed
from parley.gateway import Gateway
from parley.server.responses import JSONBytes, anthropic_error

_EPOCH = 1735689600  # 2025-01-01T00:00:00Z: configured models have no real creation date
_CREATED_AT = dt.datetime.fromtimestamp(_EPOCH, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
MAX_PAGE = 1000


def model_object(name: str, owner: str, card: ModelCard | None = None) -> dict[str, Any]:
    card = card or ModelCard()
    return {
        "type": "model",
        "id": name,
        "display_name": card.display_name or name,
        "created_at": _CREATED_AT,
        "lifecycle": "active",
        "max_input_tokens": card.max_input_tokens,
        "max_tokens": card.max_output_tokens,
        "object": "model",
        "created": _EPOCH,
        "owned_by": owner,
    }


def page_of(data: list[dict[str, Any]], after: str | None, before: str | None, limit: str | None) -> dict:
    """One page in the Models API's cursor shape (`after_id`, `before_id`, `limit`)."""
    ids = [m["id"] for m in data]
    size = int(limit) if limit and limit.isdigit() and 0 < int(limit) <= MAX_PAGE else MAX_PAGE
    if before in ids:
        head = data[: ids.index(before)]
        page, has_more = head[-size:], len(head) > size
    else:
        rest = data[ids.index(after) + 1 :] if after in ids else data
        page, has_more = rest[:size], len(rest) > size
    return {
        "object": "list",
        "data": page,
        "has_more": has_more,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }


class ModelRoutes:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    def _models(self, allowed: tuple[str, ...]) -> list[dict[str, Any]]:
        table = self.gw.table
        names = [n for n in table.names() if "*" not in n]
        names += [n for n in allowed if "*" not in n and n not in names and table.resolve(n)]
        models = []
        for name in names:
            if not model_allowed(allowed, name):
                continue
            deps = [t.deployment for t in table.resolve(name)]
            owner = deps[0].provider if deps else "parley"
            models.append(model_object(name, owner, _card(deps)))
        return models

    async def list(self, request: Request) -> Response:
        ctx = RequestContext(api="anthropic", route="/v1/models", headers=request.headers)
        try:
            await self.gw.pipeline.auth.authenticate(ctx)
        except GatewayError as error:
            return anthropic_error(ctx, error)
        q = request.query_params
        models = self._models(ctx.allowed_models)
        body = page_of(models, q.get("after_id"), q.get("before_id"), q.get("limit"))
        return JSONBytes(body, headers={"request-id": ctx.request_id})

    async def get(self, request: Request) -> Response:
        ctx = RequestContext(api="anthropic", route="/v1/models/{id}", headers=request.headers)
        try:
            await self.gw.pipeline.auth.authenticate(ctx)
            model_id = request.path_params["model_id"]
            deps = [t.deployment for t in self.gw.table.resolve(model_id)]
            if not deps or not model_allowed(ctx.allowed_models, model_id):
                raise GatewayError(404, f"model: {model_id!r} is not served here", "not_found_error")
            body = model_object(model_id, deps[0].provider, _card(deps))
            return JSONBytes(body, headers={"request-id": ctx.request_id})
        except GatewayError as error:
            return anthropic_error(ctx, error)

    async def info(self, request: Request) -> Response:
        """LiteLLM's `/model/info`: one entry per deployment the key may use, no secrets."""
        ctx = RequestContext(api="anthropic", route="/model/info", headers=request.headers)
        try:
            await self.gw.pipeline.auth.authenticate(ctx)
        except GatewayError as error:
            return anthropic_error(ctx, error)
        wanted = request.query_params.get("litellm_model_id")
        data = [
            self._info(dep)
            for dep in self.gw.table.deployments
            if model_allowed(ctx.allowed_models, dep.model_name) and wanted in (None, dep.id)
        ]
        return JSONBytes({"data": data}, headers={"request-id": ctx.request_id})

    def _info(self, dep: Deployment) -> dict[str, Any]:
        price = self.gw.prices.for_deployment(dep, dep.model)
        card = dep.card
        return {
            "model_name": dep.model_name,
            "litellm_params": {"model": f"{dep.provider}/{dep.model}"},
            "model_info": {
                "id": dep.id,
                "key": dep.model,
                "display_name": card.display_name or dep.model_name,
                "litellm_provider": dep.provider,
                "mode": "chat",
                "max_input_tokens": card.max_input_tokens,
                "max_output_tokens": card.max_output_tokens,
                "max_tokens": card.max_output_tokens,
                "input_cost_per_token": price.input if price.known else None,
                "output_cost_per_token": price.output if price.known else None,
                "cache_read_input_token_cost": price.cache_read if price.known else None,
                "cache_creation_input_token_cost": price.cache_write_5m if price.known else None,
            },
        }


def _card(deps: list[Deployment]) -> ModelCard:
    """The first deployment's `model_info` that says anything, field by field."""
    return ModelCard(
        next((d.card.display_name for d in deps if d.card.display_name), None),
        next((d.card.max_input_tokens for d in deps if d.card.max_input_tokens), None),
        next((d.card.max_output_tokens for d in deps if d.card.max_output_tokens), None),
    )
