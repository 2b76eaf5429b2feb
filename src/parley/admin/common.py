"""Plumbing shared by the admin handlers: the endpoint registry, auth, JSON in and out, paging."""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response

from parley.core.context import new_request_id
from parley.core.errors import GatewayError, anthropic_error_body
from parley.pipeline.filter import client_key
from parley.spend.periods import iso
from parley.store import tables as t
from parley.store.outage import DATABASE_ERRORS, database_unavailable
from parley.store.records import hash_key

TIME_FIELDS = ("budget_reset_at", "expires", "created_at", "updated_at")

ADMIN_MAX_BODY = 1024 * 1024  # admin bodies are small; a larger max_request_size_mb does not raise it

Handler = Callable[[Any, Request, dict[str, Any]], Awaitable[Any]]


class JSONBytes(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else orjson.dumps(content)


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    body: dict[str, str] = field(default_factory=dict)  # field -> kind (admin.fields.CHECKS)
    query: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    self_service: bool = False  # a virtual key may call it about itself (no ?key, or its own)


def plain(row: Any) -> dict[str, Any]:
    """A row as a dict with plain str keys."""
    return {str(k): v for k, v in row._asdict().items()}


ADMIN_ROLES = frozenset({"proxy_admin", "admin"})  # LiteLLM's role name, and a short one


async def check_master(service: Any, request: Request) -> None:
    """The master key, or a virtual key of a user whose `user_role` is `proxy_admin` (an admin key)."""
    master = service.config.general.master_key
    if master is None:
        raise GatewayError(
            403, "the admin API needs general_settings.master_key to be set", "permission_error"
        )
    key = client_key(request.headers)
    if key is None:
        raise GatewayError(
            401,
            "missing API key: send the master key as x-api-key or Authorization: Bearer",
            "authentication_error",
        )
    if hmac.compare_digest(key.encode(), master.encode()):
        return
    record = await service.cache.key(hash_key(key)) if key.startswith("sk-") else None
    if record is None or record.blocked or (record.expires is not None and record.expires <= time.time()):
        raise GatewayError(
            401, "the admin API requires the master key or an admin key", "authentication_error"
        )
    if record.user_id is None or await _role(service, record.user_id) not in ADMIN_ROLES:
        raise GatewayError(
            403,
            f"key {record.label} is not an admin key (its user needs user_role proxy_admin)",
            "permission_error",
        )


async def _role(service: Any, user_id: str) -> str | None:
    async with service.engine.connect() as conn:
        query = sa.select(t.users.c.user_role).where(t.users.c.user_id == user_id)
        return (await conn.execute(query)).scalar()


def _about_itself(request: Request) -> bool:
    """A virtual key asking about itself: no `key` query parameter, or its own value."""
    key = client_key(request.headers)
    asked = request.query_params.get("key")
    return key is not None and key.startswith("sk-") and asked in (None, "", key)


def body_limit(service: Any) -> int:
    """The admin API's body limit: 1 MiB, or max_request_size_mb when that is smaller."""
    return min(ADMIN_MAX_BODY, service.config.general.max_request_bytes)


async def read_limited(request: Request, limit: int) -> bytes:
    """The raw body; 413 (request_too_large) as soon as it is known to pass `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        413, f"request body exceeds the admin API's limit of {limit} bytes", "request_too_large"
    )


async def read_json(request: Request, limit: int = ADMIN_MAX_BODY) -> dict[str, Any]:
    if request.method == "GET":
        return {}
    raw = await read_limited(request, limit)
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise GatewayError(400, f"request body is not valid JSON: {e}", "invalid_request_error") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "request body must be a JSON object", "invalid_request_error")
    return body


def wrap(service: Any, endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        request_id = new_request_id()
        try:
            try:
                await check_master(service, request)
            except GatewayError as refused:
                # a virtual key (admin or not) reading its own record, as LiteLLM allows
                if not (endpoint.self_service and refused.status in (401, 403) and _about_itself(request)):
                    raise
            body = await read_json(request, body_limit(service))
            result = await endpoint.handler(service, request, body)
        except DATABASE_ERRORS:
            e = database_unavailable("the admin API needs it")
            return JSONBytes(
                anthropic_error_body(e.type, e.message, request_id),
                status_code=e.status,
                headers={"request-id": request_id, **e.headers},
            )
        except GatewayError as e:
            return JSONBytes(
                anthropic_error_body(e.type, e.message, request_id),
                status_code=e.status,
                headers={"request-id": request_id},
            )
        return JSONBytes(result, headers={"request-id": request_id})

    return handle


USD_PLACES = 10  # spend is stored exact; shown to 1e-10 USD, not as 0.00037799999999999997


def usd(value: Any) -> Any:
    """A dollar amount for display (None and non-numbers unchanged)."""
    return round(value, USD_PLACES) if isinstance(value, float) else value


def public(row: Any, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """A DB row as admin JSON: times in ISO 8601, spend rounded for display, `metadata` and lists
    never null."""
    out = {}
    for name, value in row._asdict().items():
        name = str(name)  # a quoted_name, which orjson refuses as a key
        if name in drop:
            continue
        out[name] = iso(value) if name in TIME_FIELDS else usd(value) if name == "spend" else value
    for name in ("models", "tags"):
        if name in out and out[name] is None:
            out[name] = []
    if "metadata" in out and out["metadata"] is None:
        out["metadata"] = {}
    return out


def page_args(request: Request, size_name: str = "page_size", default: int = 25) -> tuple[int, int]:
    q = request.query_params
    try:
        page = int(q.get("page", 1))
        size = int(q.get(size_name, q.get("size", default)))
    except ValueError:
        raise GatewayError(400, f"page and {size_name} must be integers", "invalid_request_error") from None
    if page < 1 or not 1 <= size <= 1000:
        raise GatewayError(
            400, f"page must be >= 1 and {size_name} between 1 and 1000", "invalid_request_error"
        )
    return page, size


def total_pages(total: int, size: int) -> int:
    return max(1, math.ceil(total / size)) if total else 0


def not_found(what: str) -> GatewayError:
    return GatewayError(404, f"{what} not found", "not_found_error")
