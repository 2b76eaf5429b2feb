"""`GET /spend/daily`: spend per local day (any IANA time zone) and per group, summed in SQL.

The database sums rows into 15-minute UTC buckets per group (so every time zone, half-hour offsets
and DST included, maps each bucket to one local day); the few buckets are folded into days here.
Totals are over every matching row, never one page. Groups are labelled for people: keys by alias.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from starlette.requests import Request

from parley.admin.common import Endpoint
from parley.admin.fields import bad
from parley.admin.spend import GROUPS, QUERY, S, filters
from parley.store import tables as t

BUCKET = 900  # seconds
COUNTS = ("spend", "requests", "prompt_tokens", "completion_tokens")


def _zone(request: Request) -> ZoneInfo:
    name = request.query_params.get("tz") or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise bad(f"tz: unknown time zone {name!r} (use an IANA name such as Europe/Paris)", "tz") from None


async def daily(service: Any, request: Request, body: dict[str, Any]) -> dict[str, Any]:
    group_by = request.query_params.get("group_by", "model")
    if group_by not in GROUPS:
        raise bad(f"group_by: one of {', '.join(GROUPS)}", "group_by")
    zone, group = _zone(request), GROUPS[group_by]
    tagged = group_by == "tag"
    source = S.join(t.spend_log_tags, t.spend_log_tags.c.request_id == S.c.request_id) if tagged else S
    bucket = sa.func.floor(S.c.start_time / BUCKET).label("bucket")
    label = sa.func.max(S.c.key_alias) if group_by == "key" else sa.func.max(group)
    stmt = (
        sa.select(
            bucket,
            group.label("group"),
            label.label("label"),
            sa.func.sum(S.c.spend),
            sa.func.count(),
            sa.func.sum(S.c.prompt_tokens),
            sa.func.sum(S.c.completion_tokens),
        )
        .select_from(source)
        .where(*filters(request))
        .group_by(bucket, group)
    )
    await service.writer.flush()
    async with service.engine.connect() as conn:
        rows = list(await conn.execute(stmt))
    return _fold(rows, zone, group_by)


def _fold(rows: list[Any], zone: ZoneInfo, group_by: str) -> dict[str, Any]:
    cells: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0, 0, 0])
    labels: dict[str, str] = {}
    for bucket, group, label, spend, requests, prompt, completion in rows:
        day = dt.datetime.fromtimestamp(float(bucket) * BUCKET, zone).date().isoformat()
        key = group if group is not None else "(none)"
        labels[key] = label or key
        cell = cells[(day, key)]
        for i, value in enumerate((spend, requests, prompt, completion)):
            cell[i] += float(value or 0)
    series = [{"day": day, **_row(key, labels, cell)} for (day, key), cell in sorted(cells.items())]
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0, 0])
    for (_, key), cell in cells.items():
        totals[key] = [a + b for a, b in zip(totals[key], cell, strict=True)]
    groups = sorted((_row(k, labels, v) for k, v in totals.items()), key=lambda g: -g["spend"])
    return {
        "group_by": group_by,
        "tz": zone.key,
        "days": sorted({day for day, _ in cells}),
        "series": series,
        "groups": groups,
        "total_spend": sum(g["spend"] for g in groups),
        "total_requests": sum(g["requests"] for g in groups),
    }


def _row(key: str, labels: dict[str, str], cell: list[float]) -> dict[str, Any]:
    typed = [float(cell[0]), int(cell[1]), int(cell[2]), int(cell[3])]
    return {"group": key, "label": labels[key], **dict(zip(COUNTS, typed, strict=True))}


ENDPOINTS = [
    Endpoint(
        "GET",
        "/spend/daily",
        daily,
        "Spend per local day (tz) and per key, user, team, customer, tag or model; totals over all rows",
        query=(*QUERY, "group_by", "tz"),
    ),
]
