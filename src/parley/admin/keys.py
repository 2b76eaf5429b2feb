"""`/key/*`: generate, update, delete, info, list, block, unblock, regenerate.

The key (`sk-…`) is returned once, in `key`; only its sha256 (`token`) is stored. Wherever a key
is named (`key` in bodies and queries) either the key itself or its token is accepted.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import sqlalchemy as sa
from starlette.requests import Request

from parley.admin.common import Endpoint, not_found, page_args, public, total_pages
from parley.admin.fields import BUDGET_FIELDS, bad, budget_columns, check_guardrails, require, take
from parley.core.errors import GatewayError
from parley.pipeline.filter import client_key
from parley.spend.periods import add_duration
from parley.store import tables as t
from parley.store.records import hash_key

KEY_FIELDS = {
    **BUDGET_FIELDS,
    "key_alias": "str",
    "user_id": "str",
    "team_id": "str",
    "tags": "strs",
    "end_users": "strs",
    "budget_mode": "mode",
    "duration": "duration",
    "expires": "time",
    "guardrails": "strs",
}


def new_key() -> str:
    return "sk-" + secrets.token_urlsafe(24)


def token_of(value: Any) -> str:
    """The stored hash for a key given as `sk-…` or as its hash."""
    if not isinstance(value, str) or not value:
        raise bad("key: must be a non-empty string", "key")
    return hash_key(value) if value.startswith("sk-") else value


def _columns(values: dict[str, Any], now: float) -> dict[str, Any]:
    cols = budget_columns(values, now)
    duration = cols.pop("duration", None) if "duration" in cols else None
    if "duration" in values:
        cols["expires"] = add_duration(now, duration) if duration else None
    if cols.get("budget_mode") is None:
        cols.pop("budget_mode", None)
    return cols


async def _check_refs(conn, cols: dict[str, Any]) -> None:
    team = cols.get("team_id")
    if team is not None:
        found = (await conn.execute(sa.select(t.teams.c.team_id).where(t.teams.c.team_id == team))).first()
        if found is None:
            raise bad(f"team_id: team {team!r} does not exist; create it with /team/new", "team_id")
    alias = cols.get("key_alias")
    if alias is not None:
        clash = (await conn.execute(sa.select(t.keys.c.token).where(t.keys.c.key_alias == alias))).first()
        if clash is not None and clash[0] != cols.get("token"):
            raise bad(f"key_alias: {alias!r} is already used by another key", "key_alias")


async def _key_row(conn, token: str) -> Any:
    row = (await conn.execute(sa.select(t.keys).where(t.keys.c.token == token))).first()
    if row is None:
        raise not_found("key")
    return row


async def create_key(service: Any, values: dict[str, Any], raw: str | None = None) -> dict[str, Any]:
    now = time.time()
    raw = raw or new_key()
    token = hash_key(raw)
    cols = _columns(values, now)
    cols.update(token=token, key_name=f"sk-...{raw[-4:]}", created_at=now, updated_at=now)
    async with service.engine.begin() as conn:
        await _check_refs(conn, cols)
        if (await conn.execute(sa.select(t.keys.c.token).where(t.keys.c.token == token))).first():
            raise bad("key: this key already exists", "key")
        await conn.execute(sa.insert(t.keys).values(**cols))
        row = await _key_row(conn, token)
    await service.invalidate("key", token)
    return {**public(row), "key": raw}


async def generate(service: Any, request: Request, body: dict[str, Any]) -> dict[str, Any]:
    values = take(body, KEY_FIELDS)
    check_guardrails(values, service.config.guardrails)
    raw = body.get("key")
    if raw is not None and (not isinstance(raw, str) or not raw.startswith("sk-") or len(raw) < 12):
        raise bad("key: a custom key must be a string starting with sk- (at least 12 characters)", "key")
    return await create_key(service, values, raw)


async def update(service: Any, request: Request, body: dict[str, Any]) -> dict[str, Any]:
    token = token_of(require(body, "key"))
    values = take(body, KEY_FIELDS)
    check_guardrails(values, service.config.guardrails)
    cols = _columns(values, time.time())
    async with service.engine.begin() as conn:
        await _key_row(conn, token)
        await _check_refs(conn, dict(cols, token=token))
        if cols:
            await conn.execute(
                sa.update(t.keys).where(t.keys.c.token == token).values(**cols, updated_at=time.time())
            )
        row = await _key_row(conn, token)
    budget = bool({"max_budget", "budget_duration", "spend"} & cols.keys())
    await service.invalidate("key", token, budget=budget)
    return public(row)


async def delete(service: Any, request: Request, body: dict[str, Any]) -> dict[str, Any]:
    keys = body.get("keys") or []
    aliases = body.get("key_aliases") or []
    if not isinstance(keys, list) or not isinstance(aliases, list) or not (keys or aliases):
        raise bad("give keys (a list of keys or tokens) or key_aliases (a list)", "keys")
    if not all(isinstance(a, str) for a in aliases):
        raise bad("key_aliases: must be a list of strings", "key_aliases")
    tokens = [token_of(k) for k in keys]
    async with service.engine.begin() as conn:
        if aliases:
            found = await conn.execute(sa.select(t.keys.c.token).where(t.keys.c.key_alias.in_(aliases)))
            tokens += [r[0] for r in found]
        existing = [
            r[0] for r in await conn.execute(sa.select(t.keys.c.token).where(t.keys.c.token.in_(tokens)))
        ]
        if not existing:
            raise not_found("key")
        await conn.execute(sa.delete(t.keys).where(t.keys.c.token.in_(existing)))
    for token in existing:
        await service.invalidate("key", token, budget=True)
    return {"deleted_keys": existing}


async def info(service: Any, request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """One key; a virtual key may ask about itself (without ?key), as in LiteLLM."""
    own = client_key(request.headers)
    value = request.query_params.get("key") or (own if own != service.config.general.master_key else None)
    if not value:
        raise bad("key: query parameter required", "key")
    await service.writer.flush()
    async with service.engine.connect() as conn:
        row = (await conn.execute(sa.select(t.keys).where(t.keys.c.token == token_of(value)))).first()
    if row is None:
        unknown_self = GatewayError(401, "invalid x-api-key", "authentication_error")
        raise unknown_self if value == own else not_found("key")
    return {"key": row.token, "info": public(row)}


async def list_keys(service: Any, request: Request, body: dict[str, Any]) -> dict[str, Any]:
    page, size = page_args(request, "size", 10)
    q = request.query_params
    where = []
    for name, column in (
        ("user_id", t.keys.c.user_id),
        ("team_id", t.keys.c.team_id),
        ("key_alias", t.keys.c.key_alias),
        ("key_hash", t.keys.c.token),
    ):
        if q.get(name):
            where.append(column == q[name])
    full = q.get("return_full_object", "").lower() in ("1", "true", "yes")
    await service.writer.flush()
    async with service.engine.connect() as conn:
        total = (await conn.execute(sa.select(sa.func.count()).select_from(t.keys).where(*where))).scalar()
        rows = (
            await conn.execute(
                sa.select(t.keys)
                .where(*where)
                .order_by(t.keys.c.created_at, t.keys.c.token)
                .limit(size)
                .offset((page - 1) * size)
            )
        ).all()
    return {
        "keys": [public(r) if full else r.token for r in rows],
        "total_count": total,
        "current_page": page,
        "total_pages": total_pages(total, size),
    }


async def _set_blocked(service: Any, body: dict[str, Any], blocked: bool) -> dict[str, Any]:
    token = token_of(require(body, "key"))
    async with service.engine.begin() as conn:
        await _key_row(conn, token)
        await conn.execute(
            sa.update(t.keys).where(t.keys.c.token == token).values(blocked=blocked, updated_at=time.time())
        )
        row = await _key_row(conn, token)
    await service.invalidate("key", token)
    return public(row)


async def block(service: Any, request: Request, body: dict[str, Any]) -> dict[str, Any]:
    return await _set_blocked(service, body, True)


async def unblock(service: Any, request: Request, body: dict[str, Any]) -> dict[str, Any]:
    return await _set_blocked(service, body, False)


async def regenerate(service: Any, request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """A new key for the same record (budget, spend, limits kept); the old key stops working."""
    value = request.path_params.get("key") or require(body, "key")
    token = token_of(value)
    raw = body.get("new_key") or new_key()
    if not isinstance(raw, str) or not raw.startswith("sk-"):
        raise bad("new_key: must start with sk-", "new_key")
    new_token = hash_key(raw)
    cols = _columns(take(body, KEY_FIELDS), time.time())
    async with service.engine.begin() as conn:
        await _key_row(conn, token)
        await _check_refs(conn, dict(cols, token=token))
        await conn.execute(
            sa.update(t.keys)
            .where(t.keys.c.token == token)
            .values(**cols, token=new_token, key_name=f"sk-...{raw[-4:]}", updated_at=time.time())
        )
        row = await _key_row(conn, new_token)
    await service.invalidate("key", token, budget=True)
    await service.invalidate("key", new_token)
    return {**public(row), "key": raw}


ENDPOINTS = [
    Endpoint(
        "POST",
        "/key/generate",
        generate,
        "Create a virtual key (returned once, in `key`)",
        body={**KEY_FIELDS, "key": "str"},
    ),
    Endpoint(
        "POST",
        "/key/update",
        update,
        "Change a key's fields (null clears one)",
        body={**KEY_FIELDS, "key": "str"},
        required=("key",),
    ),
    Endpoint(
        "POST",
        "/key/delete",
        delete,
        "Delete keys by key/token or alias",
        body={"keys": "strs", "key_aliases": "strs"},
    ),
    Endpoint(
        "GET",
        "/key/info",
        info,
        "One key's fields and spend (a key may ask about itself)",
        query=("key",),
        self_service=True,
    ),
    Endpoint(
        "GET",
        "/key/list",
        list_keys,
        "Keys, paginated (tokens, or objects with return_full_object=true)",
        query=("page", "size", "user_id", "team_id", "key_alias", "key_hash", "return_full_object"),
    ),
    Endpoint("POST", "/key/block", block, "Block a key (401 on use)", body={"key": "str"}, required=("key",)),
    Endpoint("POST", "/key/unblock", unblock, "Unblock a key", body={"key": "str"}, required=("key",)),
    Endpoint(
        "POST",
        "/key/regenerate",
        regenerate,
        "Replace a key's secret, keeping its record",
        body={**KEY_FIELDS, "key": "str", "new_key": "str"},
        required=("key",),
    ),
    Endpoint(
        "POST",
        "/key/{key}/regenerate",
        regenerate,
        "Same as /key/regenerate",
        body={**KEY_FIELDS, "new_key": "str"},
    ),
]
