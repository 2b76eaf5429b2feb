"""The Anthropic wire shape of batches: checking a create body, and the objects the API returns."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import orjson

from parley.batches.store import BatchRow, NewItem
from parley.core.errors import GatewayError, invalid_request
from parley.pipeline.body import check_messages_request

ROUTE = "/v1/messages/batches"
MAX_ITEMS = 100_000  # Anthropic's limit per batch
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# Headers kept with a batch and sent with each of its items (the batches beta is not for /v1/messages).
ITEM_HEADERS = ("anthropic-version", "anthropic-beta")
BATCH_BETA = "message-batches-"


def parse_items(body: dict[str, Any]) -> list[NewItem]:
    """The items of a create body, each checked as a Messages request; 400 names the first bad one."""
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise invalid_request("requests: must be a non-empty list", param="requests")
    if len(requests) > MAX_ITEMS:
        raise invalid_request(f"requests: at most {MAX_ITEMS} requests per batch", param="requests")
    seen: set[str] = set()
    items = []
    for i, request in enumerate(requests):
        where = f"requests.{i}"
        if not isinstance(request, dict):
            raise invalid_request(f"{where}: must be an object with custom_id and params", param=where)
        custom_id = request.get("custom_id")
        if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
            raise invalid_request(
                f"{where}.custom_id: must be 1 to 64 letters, digits, '_' or '-'", param=f"{where}.custom_id"
            )
        if custom_id in seen:
            raise invalid_request(
                f"{where}.custom_id: {custom_id!r} is used twice", param=f"{where}.custom_id"
            )
        seen.add(custom_id)
        params = request.get("params")
        if not isinstance(params, dict):
            raise invalid_request(f"{where}.params: Field required", param=f"{where}.params")
        try:
            check_messages_request(params)
        except GatewayError as e:
            raise invalid_request(f"{where}.params.{e.message}", param=f"{where}.params") from None
        if params.get("stream"):
            raise invalid_request(f"{where}.params.stream: batch requests cannot stream", param=where)
        items.append(NewItem(custom_id, params["model"], orjson.dumps(params).decode()))
    return items


def item_headers(headers: Any) -> dict[str, str]:
    """The client headers each item is sent with."""
    kept = {}
    for name in ITEM_HEADERS:
        value = headers.get(name)
        if name == "anthropic-beta" and value:
            value = ",".join(b.strip() for b in value.split(",") if not b.strip().startswith(BATCH_BETA))
        if value:
            kept[name] = value
    return kept


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def batch_object(row: BatchRow, base_url: str) -> dict[str, Any]:
    ended = row.status == "ended"
    c = row.counts
    return {
        "id": row.id,
        "type": "message_batch",
        "processing_status": row.status,
        "request_counts": {
            "processing": c.processing,
            "succeeded": c.succeeded,
            "errored": c.errored,
            "canceled": c.canceled,
            "expired": c.expired,
        },
        "created_at": iso(row.created_at),
        "expires_at": iso(row.expires_at),
        "ended_at": iso(row.ended_at),
        "cancel_initiated_at": iso(row.cancel_initiated_at),
        "archived_at": None,
        "results_url": f"{base_url}/v1/messages/batches/{row.id}/results" if ended else None,
    }


def result_line(custom_id: str, state: str, result: str | None) -> bytes:
    """One JSONL line; canceled and expired items carry no stored result."""
    body = result if result is not None else orjson.dumps({"type": state}).decode()
    return b'{"custom_id":' + orjson.dumps(custom_id) + b',"result":' + body.encode() + b"}\n"
