"""Spend-log rows into the database with the driver's executemany and SQL rendered once.

SQLAlchemy's Core insert of a batch cost ~85 Python calls per row on the event loop (bind
processing, `construct_params`, the multi-VALUES rendering of RETURNING batches). Here the INSERT is
rendered once per dialect and column set and handed to `exec_driver_sql` with plain tuples; JSON
columns are serialized with orjson (as SQLAlchemy's JSON type would store them: `null` for None).
Which rows are new is read first with one `SELECT ... IN (...)` in the same transaction, so a retried
flush (or a replayed journal) never counts a row twice; `ON CONFLICT DO NOTHING` stays as the
backstop against a concurrent writer.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from parley.store import tables as t

_JSON_COLUMNS = frozenset(c.name for c in t.spend_logs.columns if isinstance(c.type, sa.JSON))
SKIP = "_tags"  # a writer-side key that is not a column


class LogInsert:
    """The rendered statements for one dialect (one per writer; rendered lazily, per column set)."""

    def __init__(self, dialect: sa.Dialect) -> None:
        self.dialect = dialect
        self.quote = dialect.identifier_preparer.quote
        self.table = self.quote(t.spend_logs.name)
        self._inserts: dict[tuple[str, ...], str] = {}

    def _mark(self, i: int) -> str:
        style = self.dialect.paramstyle
        if style == "qmark":
            return "?"
        if style in ("numeric_dollar",):
            return f"${i}"
        if style == "numeric":
            return f":{i}"
        return "%s"  # format, pyformat

    def insert_sql(self, columns: tuple[str, ...]) -> str:
        sql = self._inserts.get(columns)
        if sql is None:
            marks = ", ".join(self._mark(i + 1) for i in range(len(columns)))
            names = ", ".join(self.quote(c) for c in columns)
            sql = (
                f"INSERT INTO {self.table} ({names}) VALUES ({marks}) "
                f"ON CONFLICT ({self.quote('request_id')}) DO NOTHING"
            )
            self._inserts[columns] = sql
        return sql

    def existing_sql(self, n: int) -> str:
        marks = ", ".join([self._mark(i + 1) for i in range(n)])
        rid = self.quote("request_id")
        return f"SELECT {rid} FROM {self.table} WHERE {rid} IN ({marks})"

    async def write(self, conn: AsyncConnection, batch: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Insert the rows of `batch` not stored yet; returns those rows (in batch order)."""
        ids = [row["request_id"] for row in batch]
        stored: set[str] = set()
        for start in range(0, len(ids), 500):  # well under every driver's parameter limit
            part = ids[start : start + 500]
            result = await conn.exec_driver_sql(self.existing_sql(len(part)), tuple(part))
            stored.update(r[0] for r in result)
        seen: set[str] = set()
        fresh = []
        for row in batch:
            rid = row["request_id"]
            if rid not in stored and rid not in seen:
                seen.add(rid)
                fresh.append(row)
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in fresh:
            groups.setdefault(tuple([k for k in row if k != SKIP]), []).append(row)
        for columns, rows in groups.items():
            await conn.exec_driver_sql(self.insert_sql(columns), _values(rows, columns))
        return fresh


def _values(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """The rows as tuples in `columns` order, JSON columns serialized."""
    get = operator.itemgetter(*columns)
    json_at = [i for i, c in enumerate(columns) if c in _JSON_COLUMNS]
    if not json_at:
        return [get(row) for row in rows]
    out = []
    for row in rows:
        values = list(get(row))
        for i in json_at:
            values[i] = orjson.dumps(values[i]).decode()
        out.append(tuple(values))
    return out
