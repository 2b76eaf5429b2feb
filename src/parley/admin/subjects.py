"""`/user/*`, `/team/*` and `/customer/*`: the same budget-holding records under three names."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request

from parley.admin.common import Endpoint, not_found, page_args, public, total_pages
from parley.admin.fields import BUDGET_FIELDS, bad, budget_columns, check_guardrails, require, take
from parley.admin.keys import create_key
from parley.store import tables as t


@dataclass(frozen=True)
class Kind:
    name: str  # "user", "team", "customer" (the ledger/cache scope)
    prefix: str  # URL prefix
    table: sa.Table
    id_field: str  # field naming the record in bodies
    info_query: str  # query parameter of /info
    delete_field: str  # list field of /delete
    fields: dict[str, str]
    label: str

    @property
    def id_col(self) -> sa.Column:
        return self.table.c[t.SUBJECTS[self.name][1]]


USER = Kind(
    "user",
    "/user",
    t.users,
    "user_id",
    "user_id",
    "user_ids",
    {**BUDGET_FIELDS, "user_id": "str", "user_alias": "str", "user_email": "str", "user_role": "str"},
    "user",
)
TEAM = Kind(
    "team",
    "/team",
    t.teams,
    "team_id",
    "team_id",
    "team_ids",
    {**BUDGET_FIELDS, "team_id": "str", "team_alias": "str", "guardrails": "strs"},
    "team",
)
CUSTOMER = Kind(
    "customer",
    "/customer",
    t.customers,
    "user_id",
    "end_user_id",
    "user_ids",
    {**BUDGET_FIELDS, "user_id": "str", "alias": "str"},
    "customer",
)


async def _row(conn: AsyncConnection, kind: Kind, ident: str | None) -> Any:
    row = (await conn.execute(sa.select(kind.table).where(kind.id_col == ident))).first()
    if row is None:
        raise not_found(f"{kind.label} {ident!r}")
    return row


def _ident(kind: Kind, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise bad(f"{kind.id_field}: must be a non-empty string", kind.id_field)
    return value


async def new(service: Any, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
    values = take(body, kind.fields)
    check_guardrails(values, service.config.guardrails)
    if kind is CUSTOMER:
        require(body, "user_id")
    ident = values.pop(kind.id_field, None) or (str(uuid.uuid4()) if kind is not CUSTOMER else None)
    now = time.time()
    cols = budget_columns(values, now)
    cols.update({kind.id_col.name: ident, "created_at": now, "updated_at": now})
    async with service.engine.begin() as conn:
        exists = (await conn.execute(sa.select(kind.id_col).where(kind.id_col == ident))).first()
        if exists is not None:
            raise bad(f"{kind.id_field}: {kind.label} {ident!r} already exists", kind.id_field)
        await conn.execute(sa.insert(kind.table).values(**cols))
        row = await _row(conn, kind, ident)
    await service.invalidate(kind.name, ident, budget=True)
    out = public(row)
    if kind is USER and body.get("auto_create_key", True) is True:
        key = await create_key(service, {"user_id": ident, "models": values.get("models")})
        out["key"] = key["key"]
    return out


async def update(service: Any, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
    ident = _ident(kind, require(body, kind.id_field))
    values = take(body, kind.fields)
    check_guardrails(values, service.config.guardrails)
    values.pop(kind.id_field, None)
    cols = budget_columns(values)
    async with service.engine.begin() as conn:
        await _row(conn, kind, ident)
        if cols:
            await conn.execute(
                sa.update(kind.table).where(kind.id_col == ident).values(**cols, updated_at=time.time())
            )
        row = await _row(conn, kind, ident)
    budget = bool({"max_budget", "budget_duration", "spend"} & cols.keys())
    await service.invalidate(kind.name, ident, budget=budget)
    return public(row)


async def delete(service: Any, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
    ids = body.get(kind.delete_field)
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise bad(f"{kind.delete_field}: Field required, a list of ids", kind.delete_field)
    async with service.engine.begin() as conn:
        found = [r[0] for r in await conn.execute(sa.select(kind.id_col).where(kind.id_col.in_(ids)))]
        if not found:
            raise not_found(kind.label)
        await conn.execute(sa.delete(kind.table).where(kind.id_col.in_(found)))
        if kind is TEAM:  # keys of a deleted team lose the team, as they would a dangling id
            await conn.execute(sa.update(t.keys).where(t.keys.c.team_id.in_(found)).values(team_id=None))
        if kind is USER:  # a deleted user's keys go with them (as in LiteLLM): no key outlives its budget
            await conn.execute(sa.delete(t.keys).where(t.keys.c.user_id.in_(found)))
    for ident in found:
        await service.invalidate(kind.name, ident, budget=True)
    return {f"deleted_{kind.delete_field}": found}


async def info(service: Any, kind: Kind, request: Request) -> dict[str, Any]:
    ident = request.query_params.get(kind.info_query)
    if not ident:
        raise bad(f"{kind.info_query}: query parameter required", kind.info_query)
    await service.writer.flush()
    async with service.engine.connect() as conn:
        row = public(await _row(conn, kind, ident))
        if kind is CUSTOMER:
            return row
        column = t.keys.c.user_id if kind is USER else t.keys.c.team_id
        keys = [
            public(r)
            for r in await conn.execute(
                sa.select(t.keys).where(column == ident).order_by(t.keys.c.created_at)
            )
        ]
    if kind is USER:
        return {
            "user_id": ident,
            "user_info": row,
            "keys": keys,
            "teams": sorted({k["team_id"] for k in keys if k["team_id"]}),
        }
    return {"team_id": ident, "team_info": row, "keys": keys}


async def list_all(service: Any, kind: Kind, request: Request) -> Any:
    page, size = page_args(request)
    await service.writer.flush()
    async with service.engine.connect() as conn:
        total = (await conn.execute(sa.select(sa.func.count()).select_from(kind.table))).scalar()
        rows = [
            public(r)
            for r in await conn.execute(
                sa.select(kind.table)
                .order_by(kind.table.c.created_at, kind.id_col)
                .limit(size)
                .offset((page - 1) * size)
            )
        ]
    if kind is USER:
        return {
            "users": rows,
            "total": total,
            "page": page,
            "page_size": size,
            "total_pages": total_pages(total, size),
        }
    return rows  # LiteLLM's /team/list and /customer/list return a plain list


async def set_blocked(service: Any, kind: Kind, body: dict[str, Any], blocked: bool) -> Any:
    ids = body.get(kind.delete_field) if kind is CUSTOMER else [require(body, kind.id_field)]
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise bad(f"{kind.delete_field}: Field required, a list of ids", kind.delete_field)
    async with service.engine.begin() as conn:
        for ident in ids:
            await _row(conn, kind, ident)
        await conn.execute(
            sa.update(kind.table).where(kind.id_col.in_(ids)).values(blocked=blocked, updated_at=time.time())
        )
        rows = [public(await _row(conn, kind, ident)) for ident in ids]
    for ident in ids:
        await service.invalidate(kind.name, ident)
    return {"blocked_users": ids} if kind is CUSTOMER else rows[0]


def endpoints(kind: Kind) -> list[Endpoint]:
    p, label = kind.prefix, kind.label

    def bind(fn, *extra):
        async def handler(service, request, body):
            return await fn(
                service, kind, *(request if e == "request" else body if e == "body" else e for e in extra)
            )

        return handler

    new_path = "/user/new" if kind is USER else f"{p}/new"
    out = [
        Endpoint(
            "POST",
            new_path,
            bind(new, "body"),
            f"Create a {label}",
            body={**kind.fields, **({"auto_create_key": "bool"} if kind is USER else {})},
            required=(kind.id_field,) if kind is CUSTOMER else (),
        ),
        Endpoint(
            "GET",
            f"{p}/info",
            bind(info, "request"),
            f"One {label}, with its spend",
            query=(kind.info_query,),
        ),
        Endpoint(
            "POST",
            f"{p}/update",
            bind(update, "body"),
            f"Change a {label}'s fields",
            body=kind.fields,
            required=(kind.id_field,),
        ),
        Endpoint(
            "POST",
            f"{p}/delete",
            bind(delete, "body"),
            f"Delete {label}s",
            body={kind.delete_field: "strs"},
            required=(kind.delete_field,),
        ),
        Endpoint(
            "GET",
            f"{p}/list",
            bind(list_all, "request"),
            f"All {label}s, paginated",
            query=("page", "page_size"),
        ),
    ]
    if kind is not USER:
        block_body = {kind.delete_field: "strs"} if kind is CUSTOMER else {kind.id_field: "str"}
        out += [
            Endpoint(
                "POST", f"{p}/block", bind(set_blocked, "body", True), f"Block a {label}", body=block_body
            ),
            Endpoint(
                "POST",
                f"{p}/unblock",
                bind(set_blocked, "body", False),
                f"Unblock a {label}",
                body=block_body,
            ),
        ]
    return out


ENDPOINTS = endpoints(USER) + endpoints(TEAM) + endpoints(CUSTOMER)
