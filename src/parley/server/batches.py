"""`/v1/messages/batches`: Anthropic's Message Batches API, run by the gateway for every backend.

Calls are authenticated like `/v1/messages` (parley keys); a key sees only the batches it created,
the master key sees all. Work happens in `parley.batches.runner`; these routes only read and write
the batch records.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from parley.batches.store import BatchRow
from parley.batches.wire import ROUTE, batch_object, item_headers, parse_items, result_line
from parley.core.context import RequestContext
from parley.core.errors import GatewayError, invalid_request
from parley.gateway import Gateway
from parley.pipeline.body import parse_object
from parley.server.body import read_body
from parley.store.outage import DATABASE_ERRORS, database_unavailable
from parley.store.records import KeyRecord

if TYPE_CHECKING:  # the runner (and the storage stack) is imported only with a database
    from parley.batches.runner import BatchRunner

MAX_BATCH_BYTES = 256 * 1024 * 1024  # Anthropic's limit for a create body
RESULTS_PAGE = 500  # items read from the database per step of the results stream

Handler = Callable[[Request, RequestContext, "BatchRunner"], Awaitable[Response]]


class BatchRoutes:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    def routes(self) -> list[Route]:
        one = ROUTE + "/{batch_id}"
        return [
            Route(ROUTE, self._wrap(self.create), methods=["POST"]),
            Route(ROUTE, self._wrap(self.list), methods=["GET"]),
            Route(one, self._wrap(self.retrieve), methods=["GET"]),
            Route(one, self._wrap(self.delete), methods=["DELETE"]),
            Route(one + "/cancel", self._wrap(self.cancel), methods=["POST"]),
            Route(one + "/results", self._wrap(self.results), methods=["GET"]),
        ]

    def _wrap(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            ctx = RequestContext(api="anthropic", route=ROUTE, headers=request.headers)
            try:
                runner = self.gw.batches
                if runner is None:
                    raise GatewayError(
                        404,
                        "message batches need a database: set general_settings.database_url or DATABASE_URL",
                        "not_found_error",
                    )
                await self.gw.pipeline.auth.authenticate(ctx)
                return await handler(request, ctx, runner)
            except GatewayError as error:
                return _error(ctx, error)
            except DATABASE_ERRORS:
                return _error(ctx, database_unavailable("message batches"))

        return handle

    async def create(self, request: Request, ctx: RequestContext, runner: BatchRunner) -> Response:
        raw = await read_body(request, max(MAX_BATCH_BYTES, self.gw.config.general.max_request_bytes))
        items = parse_items(parse_object(raw))
        record = ctx.auth if isinstance(ctx.auth, KeyRecord) else None
        if record is not None:
            from parley.filters.virtual_keys import check_models

            for model in dict.fromkeys(item.model for item in items):
                check_models(record, model)
        now = time.time()
        batch_id = await runner.store.create(
            record.token if record else None,
            record.team_id if record else None,
            item_headers(request.headers),
            items,
            now,
            now + runner.settings.expiry_hours * 3600,
        )
        runner.wake.set()
        return await self._show(request, ctx, runner, batch_id)

    async def list(self, request: Request, ctx: RequestContext, runner: BatchRunner) -> Response:
        q = request.query_params
        limit_text = q.get("limit", "20")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
            raise invalid_request("limit: must be an integer from 1 to 1000", param="limit")
        owner, everyone = _owner(ctx)
        rows, more = await runner.store.page(
            owner, everyone, q.get("before_id") or None, q.get("after_id") or None, int(limit_text)
        )
        base = _base(request)
        data = [batch_object(row, base) for row in rows]
        page = {
            "data": data,
            "has_more": more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
        return _json(ctx, page)

    async def retrieve(self, request: Request, ctx: RequestContext, runner: BatchRunner) -> Response:
        return await self._show(request, ctx, runner, request.path_params["batch_id"])

    async def cancel(self, request: Request, ctx: RequestContext, runner: BatchRunner) -> Response:
        row = await _visible(ctx, runner, request.path_params["batch_id"])
        if row.status == "in_progress":
            await runner.store.cancel(row.id, time.time())
        return await self._show(request, ctx, runner, row.id)

    async def delete(self, request: Request, ctx: RequestContext, runner: BatchRunner) -> Response:
        row = await _visible(ctx, runner, request.path_params["batch_id"])
        if row.status != "ended":
            raise invalid_request(f"batch {row.id} is still {row.status}; cancel it and wait for it to end")
        await runner.store.delete(row.id)
        return _json(ctx, {"id": row.id, "type": "message_batch_deleted"})

    async def results(self, request: Request, ctx: RequestContext, runner: BatchRunner) -> Response:
        row = await _visible(ctx, runner, request.path_params["batch_id"])
        if row.status != "ended":
            raise invalid_request(f"batch {row.id} has not ended yet (processing_status: {row.status})")
        first = await runner.store.results(row.id, -1, RESULTS_PAGE)  # errors here still get an envelope

        async def lines() -> AsyncIterator[bytes]:
            page = first
            while page:
                yield b"".join(result_line(r.custom_id, r.state, r.result) for r in page)
                page = await runner.store.results(row.id, page[-1].idx, RESULTS_PAGE)

        headers = {"request-id": ctx.request_id}
        return StreamingResponse(lines(), media_type="application/binary", headers=headers)

    async def _show(
        self, request: Request, ctx: RequestContext, runner: BatchRunner, batch_id: str
    ) -> Response:
        row = await _visible(ctx, runner, batch_id)
        return _json(ctx, batch_object(row, _base(request)))


def _owner(ctx: RequestContext) -> tuple[str | None, bool]:
    """(the owning key's hash, whether every batch is visible: the master key, or no auth at all)."""
    if isinstance(ctx.auth, KeyRecord):
        return ctx.auth.token, False
    return None, True


async def _visible(ctx: RequestContext, runner: BatchRunner, batch_id: str) -> BatchRow:
    row = await runner.store.get(batch_id)
    owner, everyone = _owner(ctx)
    if row is None or row.kind is not None or not (everyone or row.api_key == owner):
        raise GatewayError(404, f"message batch {batch_id!r} not found", "not_found_error")
    return row


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _json(ctx: RequestContext, data: object) -> Response:
    return Response(orjson.dumps(data), media_type="application/json", headers={"request-id": ctx.request_id})


def _error(ctx: RequestContext, error: GatewayError) -> Response:
    headers = {"request-id": ctx.request_id, **error.headers}
    return Response(
        error.anthropic_body(ctx.request_id), error.status, headers=headers, media_type="application/json"
    )
