"""Message Batches on the fake upstream (Anthropic protocol), kept in memory.

A batch is `in_progress` when created and `ended` `end_after` seconds later (default 0.3; set the
`x-fake-end-after` request header to change it). Each request's result is what `/v1/messages` would
have answered, with `service_tier: "batch"` usage. `results_url` points at the fake itself, as the
real API's points at api.anthropic.com.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from typing import Any

import orjson
from aiohttp import web

from parley.testing.fake_anthropic import _check, build_message, error_body
from parley.testing.fake_state import STATE, json_response

BATCHES = web.AppKey("batches", dict)


def add_routes(app: web.Application) -> None:
    app[BATCHES] = {}
    app.router.add_post("/v1/messages/batches", create)
    app.router.add_get("/v1/messages/batches", list_batches)
    app.router.add_get("/v1/messages/batches/{id}", retrieve)
    app.router.add_delete("/v1/messages/batches/{id}", delete)
    app.router.add_post("/v1/messages/batches/{id}/cancel", cancel)
    app.router.add_get("/v1/messages/batches/{id}/results", results)


def _iso(t: float | None) -> str | None:
    return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def _view(request: web.Request, batch: dict[str, Any]) -> dict[str, Any]:
    now = time.time()
    ended = now >= batch["ends_at"]
    n = len(batch["requests"])
    counts = {"processing": 0 if ended else n, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    if ended:
        counts["canceled" if batch["canceled_at"] else "succeeded"] = n
    status = "ended" if ended else ("canceling" if batch["canceled_at"] else "in_progress")
    base = f"http://{request.host}"
    return {
        "id": batch["id"],
        "type": "message_batch",
        "processing_status": status,
        "request_counts": counts,
        "created_at": _iso(batch["created"]),
        "expires_at": _iso(batch["created"] + 86400),
        "ended_at": _iso(batch["ends_at"]) if ended else None,
        "cancel_initiated_at": _iso(batch["canceled_at"]),
        "archived_at": None,
        "results_url": f"{base}/v1/messages/batches/{batch['id']}/results" if ended else None,
    }


async def create(request: web.Request) -> web.Response:
    raw, _ = await request.app[STATE].record(request)
    body = _check(request, raw)
    if isinstance(body, web.Response):
        return body
    items = body.get("requests")
    if not isinstance(items, list) or not items:
        return json_response(error_body("invalid_request_error", "requests: Field required"), 400)
    now = time.time()
    batch = {
        "id": "msgbatch_fake" + secrets.token_hex(10),
        "requests": items,
        "created": now,
        "ends_at": now + float(request.headers.get("x-fake-end-after", "0.3")),
        "canceled_at": None,
    }
    request.app[BATCHES][batch["id"]] = batch
    return json_response(_view(request, batch))


def _find(request: web.Request) -> dict | None:
    return request.app[BATCHES].get(request.match_info["id"])


def _missing(request: web.Request) -> web.Response:
    return json_response(error_body("not_found_error", f"batch {request.match_info['id']} not found"), 404)


async def retrieve(request: web.Request) -> web.Response:
    await request.app[STATE].record(request)
    batch = _find(request)
    return _missing(request) if batch is None else json_response(_view(request, batch))


async def list_batches(request: web.Request) -> web.Response:
    await request.app[STATE].record(request)
    data = [_view(request, b) for b in reversed(list(request.app[BATCHES].values()))]
    limit = int(request.query.get("limit", "20"))
    page = data[:limit]
    return json_response(
        {
            "data": page,
            "has_more": len(data) > limit,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        }
    )


async def cancel(request: web.Request) -> web.Response:
    await request.app[STATE].record(request)
    batch = _find(request)
    if batch is None:
        return _missing(request)
    if _view(request, batch)["processing_status"] == "in_progress":
        batch["canceled_at"] = time.time()
        batch["ends_at"] = batch["canceled_at"] + 0.2
    return json_response(_view(request, batch))


async def delete(request: web.Request) -> web.Response:
    await request.app[STATE].record(request)
    batch = request.app[BATCHES].pop(request.match_info["id"], None)
    if batch is None:
        return _missing(request)
    return json_response({"id": batch["id"], "type": "message_batch_deleted"})


async def results(request: web.Request) -> web.StreamResponse:
    await request.app[STATE].record(request)
    batch = _find(request)
    if batch is None:
        return _missing(request)
    if _view(request, batch)["processing_status"] != "ended":
        return json_response(error_body("invalid_request_error", "batch has not ended"), 400)
    response = web.StreamResponse(headers={"content-type": "application/binary"})
    await response.prepare(request)
    for item in batch["requests"]:
        if batch["canceled_at"]:
            result: dict = {"type": "canceled"}
        else:
            message = build_message(item.get("params") or {}, {})
            message["usage"]["service_tier"] = "batch"
            result = {"type": "succeeded", "message": message}
        await response.write(orjson.dumps({"custom_id": item.get("custom_id"), "result": result}) + b"\n")
    await response.write_eof()
    return response
