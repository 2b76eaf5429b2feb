"""`/v1/batches`: OpenAI's Batch API over a `purpose: batch` file of `/v1/files`, run by the
gateway's batch runner for every backend (`parley.batches.openai`).

Calls are authenticated like `/v1/chat/completions`; a key sees the batches of its team (or, without
a team, those it created), as OpenAI's project keys do; the master key sees all. Output and error
files belong to the key's team (or the key), as uploads do.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from parley.batches.openai import ENDPOINT, OPENAI, ROUTE, WINDOW, OpenAIFields, batch_object, parse_input
from parley.batches.store import BatchRow
from parley.core.context import RequestContext
from parley.core.errors import GatewayError, invalid_request
from parley.gateway import Gateway
from parley.pipeline.body import parse_object
from parley.retrieval.service import VectorStores, owner_of
from parley.server.body import read_body
from parley.server.vector_stores import metadata_of
from parley.store.outage import DATABASE_ERRORS, database_unavailable
from parley.store.records import KeyRecord

if TYPE_CHECKING:
    from parley.batches.runner import BatchRunner

Handler = Callable[[Request, RequestContext, "BatchRunner", VectorStores], Awaitable[Any]]


class OpenAIBatchRoutes:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    def routes(self) -> list[Route]:
        one = ROUTE + "/{batch_id}"
        return [
            Route(ROUTE, self._wrap(self.create), methods=["POST"]),
            Route(ROUTE, self._wrap(self.list), methods=["GET"]),
            Route(one, self._wrap(self.retrieve), methods=["GET"]),
            Route(one + "/cancel", self._wrap(self.cancel), methods=["POST"]),
        ]

    def _wrap(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            ctx = RequestContext(api="openai", route=ROUTE, headers=request.headers)
            try:
                runner, files = self.gw.batches, self.gw.vector_stores
                if runner is None or files is None:
                    raise GatewayError(
                        404,
                        "batches need a database: set general_settings.database_url or DATABASE_URL",
                        "not_found_error",
                    )
                await self.gw.pipeline.auth.authenticate(ctx)
                result = await handler(request, ctx, runner, files)
            except GatewayError as error:
                return _error(ctx, error)
            except DATABASE_ERRORS:
                return _error(ctx, database_unavailable("batches"))
            return Response(orjson.dumps(result), media_type="application/json", headers=_headers(ctx))

        return handle

    async def create(
        self, request: Request, ctx: RequestContext, runner: BatchRunner, files: VectorStores
    ) -> dict[str, Any]:
        body = parse_object(await read_body(request, self.gw.config.general.max_request_bytes))
        file_id = body.get("input_file_id")
        if not isinstance(file_id, str) or not file_id:
            raise invalid_request("input_file_id: Field required", param="input_file_id")
        if body.get("endpoint") != ENDPOINT:
            raise invalid_request(f"endpoint: only {ENDPOINT} is supported", param="endpoint")
        if body.get("completion_window") != WINDOW:
            raise invalid_request(f"completion_window: must be {WINDOW!r}", param="completion_window")
        metadata = metadata_of(body)
        owner = owner_of(ctx.auth)
        file = await files.file_row(owner, file_id, content=True)
        if file.purpose != "batch":
            raise invalid_request(f"input_file_id: file {file_id} has purpose {file.purpose!r}, not 'batch'")
        items, errors = parse_input(file.content)
        record = ctx.auth if isinstance(ctx.auth, KeyRecord) else None
        if record is not None and not errors:
            from parley.filters.virtual_keys import check_models

            for model in dict.fromkeys(item.model for item in items):
                check_models(record, model)
        fields = OpenAIFields(file_id, owner, metadata, errors or None)
        now = time.time()
        batch_id = await runner.store.create(
            record.token if record else None,
            record.team_id if record else None,
            {},
            [] if errors else items,
            now,
            now + runner.settings.expiry_hours * 3600,
            kind=OPENAI,
            extra=fields.to_json(),
            status="failed" if errors else "in_progress",
        )
        runner.wake.set()
        return batch_object(await _visible(ctx, runner, batch_id))

    async def list(
        self, request: Request, ctx: RequestContext, runner: BatchRunner, files: VectorStores
    ) -> dict[str, Any]:
        q = request.query_params
        limit_text = q.get("limit", "20")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 100:
            raise invalid_request("limit: an integer from 1 to 100", param="limit")
        owner, everyone = _owner(ctx)
        team = ctx.auth.team_id if isinstance(ctx.auth, KeyRecord) else None
        rows, more = await runner.store.page(
            owner, everyone, None, q.get("after") or None, int(limit_text), kind=OPENAI, team=team
        )
        data = [batch_object(row) for row in rows]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": more,
        }

    async def retrieve(
        self, request: Request, ctx: RequestContext, runner: BatchRunner, files: VectorStores
    ) -> dict[str, Any]:
        return batch_object(await _visible(ctx, runner, request.path_params["batch_id"]))

    async def cancel(
        self, request: Request, ctx: RequestContext, runner: BatchRunner, files: VectorStores
    ) -> dict[str, Any]:
        row = await _visible(ctx, runner, request.path_params["batch_id"])
        if row.status == "in_progress":
            await runner.store.cancel(row.id, time.time())
        elif row.status != "canceling":
            raise GatewayError(
                409, f"Cannot cancel a batch that is {batch_object(row)['status']}.", "invalid_request_error"
            )
        return batch_object(await _visible(ctx, runner, row.id))


def _owner(ctx: RequestContext) -> tuple[str | None, bool]:
    """(the owning key's hash, whether every batch is visible: the master key, or no auth at all)."""
    if isinstance(ctx.auth, KeyRecord):
        return ctx.auth.token, False
    return None, True


async def _visible(ctx: RequestContext, runner: BatchRunner, batch_id: str) -> BatchRow:
    row = await runner.store.get(batch_id)
    owner, everyone = _owner(ctx)
    team = ctx.auth.team_id if isinstance(ctx.auth, KeyRecord) else None
    mine = everyone or (
        row is not None and (row.api_key == owner or (team is not None and row.team_id == team))
    )
    if row is None or row.kind != OPENAI or not mine:
        raise GatewayError(404, f"No batch found with id '{batch_id}'.", "not_found_error")
    return row


def _headers(ctx: RequestContext) -> dict[str, str]:
    return {"x-request-id": ctx.request_id}


def _error(ctx: RequestContext, error: GatewayError) -> Response:
    headers = {**_headers(ctx), **error.headers}
    return Response(error.openai_body(), error.status, headers=headers, media_type="application/json")
