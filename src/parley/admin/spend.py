"""`GET /spend/logs` (filtered, paginated) and `GET /spend/report` (totals by day and group)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from starlette.requests import Request

from parley.admin.common import Endpoint, page_args, plain, total_pages, usd
from parley.admin.fields import bad
from parley.admin.keys import token_of
from parley.spend.periods import iso, parse_time
from parley.store import tables as t

S = t.spend_logs
GROUPS = {
    "key": S.c.api_key,
    "key_alias": S.c.key_alias,
    "user": S.c.user,
    "team": S.c.team_id,
    "customer": S.c.end_user,
    "model": S.c.model,
    "tag": t.spend_log_tags.c.tag,
    "session": S.c.session_id,
}
_FILTERS = (
    ("user_id", S.c.user),
    ("team_id", S.c.team_id),
    ("end_user", S.c.end_user),
    ("customer", S.c.end_user),
    ("model", S.c.model),
    ("request_id", S.c.request_id),
    ("session_id", S.c.session_id),
    ("key_alias", S.c.key_alias),
)


def _time_arg(request: Request, name: str) -> float | None:
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise bad(f"{name}: must be an ISO 8601 date or time", name) from None


def filters(request: Request) -> list[Any]:
    q = request.query_params
    where: list[Any] = []
    key = q.get("api_key") or q.get("key")
    if key:
        where.append(S.c.api_key == token_of(key))
    for name, column in _FILTERS:
        if q.get(name):
            where.append(column == q[name])
    tag = q.get("tag") or q.get("tags")
    if tag:
        where.append(
            sa.exists().where(t.spend_log_tags.c.request_id == S.c.request_id, t.spend_log_tags.c.tag == tag)
        )
    status = q.get("status")
    if status:
        where.append(_status(status))
    start, end = _time_arg(request, "start_date"), _time_arg(request, "end_date")
    if start is not None:
        where.append(S.c.start_time >= start)
    if end is not None:
        if len(q["end_date"]) == 10:  # a bare date includes that whole day
            end += 86400
        where.append(S.c.start_time < end)
    return where


def _status(value: str) -> Any:
    """`status=429`, `status=4xx`, `status=error` (>= 400) or `status=ok` (< 400)."""
    if value == "error":
        return S.c.status >= 400
    if value == "ok":
        return S.c.status < 400
    if len(value) == 3 and value[0].isdigit() and value[1:] == "xx":
        low = int(value[0]) * 100
        return sa.and_(S.c.status >= low, S.c.status < low + 100)
    if value.isdigit() and len(value) == 3:
        return S.c.status == int(value)
    raise bad("status: a code (429), a class (4xx), error or ok", "status")


def log_json(row: Any) -> dict[str, Any]:
    out = plain(row)
    out["startTime"] = iso(out.pop("start_time"))
    out["endTime"] = iso(out.pop("end_time"))
    out["request_tags"] = out["request_tags"] or []
    out["spend"] = usd(out["spend"])
    return out


async def logs(service: Any, request: Request, body: dict[str, Any]) -> dict[str, Any]:
    page, size = page_args(request, "page_size", 50)
    where = filters(request)
    await service.writer.flush()
    async with service.engine.connect() as conn:
        total = (await conn.execute(sa.select(sa.func.count()).select_from(S).where(*where))).scalar()
        rows = await conn.execute(
            sa.select(S)
            .where(*where)
            .order_by(S.c.start_time.desc(), S.c.request_id)
            .limit(size)
            .offset((page - 1) * size)
        )
        data = [log_json(r) for r in rows]
    return {
        "data": data,
        "total": total,
        "page": page,
        "page_size": size,
        "total_pages": total_pages(total, size),
    }


async def report(service: Any, request: Request, body: dict[str, Any]) -> dict[str, Any]:
    group_by = request.query_params.get("group_by", "key")
    if group_by not in GROUPS:
        raise bad(f"group_by: one of {', '.join(GROUPS)}", "group_by")
    group = GROUPS[group_by]
    source = (
        S.join(t.spend_log_tags, t.spend_log_tags.c.request_id == S.c.request_id) if group_by == "tag" else S
    )
    stmt = (
        sa.select(
            S.c.day,
            group.label("group"),
            sa.func.sum(S.c.spend).label("spend"),
            sa.func.count().label("requests"),
            sa.func.sum(S.c.prompt_tokens).label("prompt_tokens"),
            sa.func.sum(S.c.completion_tokens).label("completion_tokens"),
            sa.func.sum(S.c.cache_read_input_tokens).label("cache_read_input_tokens"),
            sa.func.sum(S.c.cache_creation_input_tokens).label("cache_creation_input_tokens"),
            *([sa.func.max(S.c.key_alias).label("key_alias")] if group_by == "key" else []),
        )
        .select_from(source)
        .where(*filters(request))
        .group_by(S.c.day, group)
        .order_by(S.c.day, group)
    )
    await service.writer.flush()
    async with service.engine.connect() as conn:
        rows = [plain(r) for r in await conn.execute(stmt)]
    total = sum(float(row["spend"] or 0.0) for row in rows)
    for row in rows:
        row["spend"] = usd(float(row["spend"] or 0.0))
        for name in (
            "prompt_tokens",
            "completion_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ):
            row[name] = int(row[name] or 0)
    return {
        "group_by": group_by,
        "data": rows,
        "total_spend": usd(total),
        "total_requests": sum(r["requests"] for r in rows),
    }


QUERY = (
    "status",
    "api_key",
    "key_alias",
    "user_id",
    "team_id",
    "end_user",
    "tag",
    "model",
    "request_id",
    "session_id",
    "start_date",
    "end_date",
)
ENDPOINTS = [
    Endpoint(
        "GET",
        "/spend/logs",
        logs,
        "One row per request, newest first, paginated",
        query=(*QUERY, "page", "page_size"),
    ),
    Endpoint(
        "GET",
        "/spend/report",
        report,
        "Spend totals by UTC day and by key (with its alias), key_alias, user, team, customer, tag, model "
        "or session",
        query=(*QUERY, "group_by"),
    ),
]
