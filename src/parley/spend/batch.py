"""One spend batch into the database: the same SQL on SQLite and Postgres, rendered once per dialect,
executed with the driver's executemany on plain tuples.

`write_batch` runs inside a transaction its caller opened and commits: on SQLite that is the spend
writer's own thread with its own stdlib `sqlite3` connection (`SqliteDb`), on Postgres a sync view of
an async connection (`DriverDb`, through `AsyncConnection.run_sync`). It inserts the rows of the batch
not stored yet (found with one `SELECT ... IN` in the same transaction, so a retried flush or a
replayed journal never counts a row twice; `ON CONFLICT DO NOTHING` stays as the backstop), their
tags, and adds their cost to the spend of keys, teams, users, customers and tags in a fixed order (no
deadlocks between instances). Due budget periods are reset first when asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import sqlalchemy as sa

from parley.spend.periods import next_reset
from parley.spend.rows import COLUMNS, JSON_AT, REQUEST_ID, RETRIEVAL, SPEND, SUBJECT_AT, TAGS, SpendRow
from parley.store import tables as t

SCOPES = ("key", "team", "user", "customer", "tag")  # the order totals are updated in
_UPDATED = ("key", "team")  # rows that must exist already; users, customers and tags are upserted
_ID_CHUNK = 500  # request ids per SELECT ... IN: well under every driver's parameter limit


class Db(Protocol):
    """What `write_batch` needs of a connection."""

    def rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...

    def run(self, sql: str, params: Sequence[Any]) -> None: ...

    def many(self, sql: str, params: list[tuple[Any, ...]]) -> None: ...

    @property
    def rows_per_insert(self) -> int: ...


class SqliteDb:
    """A stdlib `sqlite3` connection."""

    # Spend rows per INSERT statement. `executemany` gives the GIL up and takes it back around each
    # row's step; while the event loop is busy, every take-back waits for it, and the writer fell
    # behind a loaded gateway (a backlog of 75k rows after 40 s at 5,000 req/s). One statement per
    # 100 rows waits once per 100 (33 columns: 3,300 parameters, under SQLite's 32,766).
    rows_per_insert = 100

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.conn.execute(sql, params).fetchall()
        return rows

    def run(self, sql: str, params: Sequence[Any]) -> None:
        self.conn.execute(sql, params)

    def many(self, sql: str, params: list[tuple[Any, ...]]) -> None:
        self.conn.executemany(sql, params)


class DriverDb:
    """A SQLAlchemy sync `Connection`, statements passed to the driver as they are."""

    rows_per_insert = 1  # (the driver's executemany: asyncpg pipelines it)

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.conn.exec_driver_sql(sql, tuple(params))]

    def run(self, sql: str, params: Sequence[Any]) -> None:
        self.conn.exec_driver_sql(sql, tuple(params))

    def many(self, sql: str, params: list[tuple[Any, ...]]) -> None:
        self.conn.exec_driver_sql(sql, params)


class Statements:
    """The writer's SQL for one dialect (its quoting and parameter style)."""

    def __init__(self, dialect: sa.Dialect) -> None:
        self.paramstyle = dialect.paramstyle
        q = self.quote = dialect.identifier_preparer.quote
        logs, rid = q(t.spend_logs.name), q("request_id")
        self._existing_head = f"SELECT {rid} FROM {logs} WHERE {rid} IN "
        self._existing: dict[int, str] = {}
        self._head = f"INSERT INTO {logs} ({', '.join(q(c) for c in COLUMNS)}) VALUES "
        self._tail = f" ON CONFLICT ({rid}) DO NOTHING"
        self._cast_json = dialect.name == "postgresql"
        self.insert = self._head + self._row(self.mark(len(COLUMNS))) + self._tail
        self._inserts: dict[int, str] = {1: self.insert}
        tags = q(t.spend_log_tags.name)
        self.tags = f"INSERT INTO {tags} ({rid}, {q('tag')}) VALUES {self.marks(2)} ON CONFLICT DO NOTHING"
        self.add = {scope: self._add(scope) for scope in SCOPES}  # scope -> adds to its spend
        self.due = {scope: self._due(scope) for scope in t.SUBJECTS}  # ... its budget periods ended
        self.reset = {scope: self._reset(scope) for scope in t.SUBJECTS}  # ... zeroes one's spend

    def mark(self, n: int) -> list[str]:
        """The placeholders of n parameters in the dialect's style: `?`, `$1`, `:1` or `%s`."""
        style = self.paramstyle
        if style == "qmark":
            return ["?"] * n
        if style in ("numeric_dollar", "numeric"):
            sign = "$" if style == "numeric_dollar" else ":"
            return [f"{sign}{i + 1}" for i in range(n)]
        return ["%s"] * n  # format, pyformat

    def marks(self, n: int) -> str:
        """`(?, ?, ...)` for n parameters."""
        return "(" + ", ".join(self.mark(n)) + ")"

    def _row(self, marks: list[str]) -> str:
        """One row's values: None is stored as JSON `null`, as SQLAlchemy's JSON type stores it."""
        values = list(marks)
        for i in JSON_AT:
            values[i] = f"coalesce({values[i]}, 'null')"
            if self._cast_json:
                values[i] = f"CAST({values[i]} AS JSON)"
        return "(" + ", ".join(values) + ")"

    def insert_rows(self, n: int) -> str:
        """The spend-log INSERT of n rows in one statement (their parameters one row after another)."""
        sql = self._inserts.get(n)
        if sql is None:  # (a few sizes in use: the chunk and powers of two, `chunk_sizes`)
            width = len(COLUMNS)
            marks = self.mark(n * width)
            rows = ", ".join(self._row(marks[r * width : (r + 1) * width]) for r in range(n))
            sql = self._inserts[n] = self._head + rows + self._tail
        return sql

    def existing(self, n: int) -> str:
        """Which of n request ids are stored."""
        sql = self._existing.get(n)
        if sql is None:  # (powers of two up to _ID_CHUNK's)
            sql = self._existing[n] = self._existing_head + self.marks(n)
        return sql

    def _add(self, scope: str) -> str:
        """Keys and teams (params: delta, now, id); users, customers, tags (params: id, delta, now, now)."""
        q = self.quote
        table, id_col = (t.tags, "tag") if scope == "tag" else t.SUBJECTS[scope]
        name, ident, spend, updated = q(table.name), q(id_col), q("spend"), q("updated_at")
        if scope in _UPDATED:
            m = self.mark(3)
            return f"UPDATE {name} SET {spend} = {spend} + {m[0]}, {updated} = {m[1]} WHERE {ident} = {m[2]}"
        return (
            f"INSERT INTO {name} ({ident}, {spend}, {q('created_at')}, {updated}) VALUES {self.marks(4)} "
            f"ON CONFLICT ({ident}) DO UPDATE SET {spend} = {name}.{spend} + excluded.{spend}, "
            f"{updated} = excluded.{updated}"
        )

    def _due(self, scope: str) -> str:
        """(id, duration, reset time) of the subjects whose period ended (param: now)."""
        q = self.quote
        table, id_col = t.SUBJECTS[scope]
        ident, at, dur = q(id_col), q("budget_reset_at"), q("budget_duration")
        return (
            f"SELECT {ident}, {dur}, {at} FROM {q(table.name)} WHERE {at} <= {self.mark(1)[0]} "
            f"AND {dur} IS NOT NULL ORDER BY {ident}"
        )

    def _reset(self, scope: str) -> str:
        """Params: the next reset time, now, id, the reset time read."""
        q = self.quote
        table, id_col = t.SUBJECTS[scope]
        at, m = q("budget_reset_at"), self.mark(4)
        return (
            f"UPDATE {q(table.name)} SET {q('spend')} = 0.0, {at} = {m[0]}, {q('updated_at')} = {m[1]} "
            f"WHERE {q(id_col)} = {m[2]} AND {at} = {m[3]}"
        )


@dataclass(slots=True)
class Written:
    inserted: int  # rows new to the database
    totals: dict[str, dict[str, float]]  # scope -> id -> the spend of those rows added to it


def write_batch(db: Db, stmts: Statements, batch: list[SpendRow], now: float, reset: bool) -> Written:
    """Write `batch` (and reset due budgets first when `reset`)."""
    if reset:
        reset_budgets(db, stmts, now)
    fresh = _new_rows(db, stmts, batch) if batch else []
    totals = _totals(fresh)
    if fresh:
        _insert(
            db, stmts, [row if row[TAGS] is None and row[RETRIEVAL] is None else _json(row) for row in fresh]
        )
        pairs = [(row[REQUEST_ID], tag) for row in fresh if row[TAGS] for tag in dict.fromkeys(row[TAGS])]
        if pairs:
            db.many(stmts.tags, pairs)
        for scope in SCOPES:  # fixed order, ids sorted: no deadlocks between instances
            items = sorted(totals[scope].items())
            if not items:
                continue
            if scope in _UPDATED:
                db.many(stmts.add[scope], [(delta, now, ident) for ident, delta in items])
            else:
                db.many(stmts.add[scope], [(ident, delta, now, now) for ident, delta in items])
    return Written(len(fresh), totals)


def _insert(db: Db, stmts: Statements, rows: list[SpendRow]) -> None:
    """The rows into the spend log, `db.rows_per_insert` to a statement (1: the driver's executemany)."""
    per = db.rows_per_insert
    if per <= 1:
        db.many(stmts.insert, rows)
        return
    start = 0
    for size in chunk_sizes(len(rows), per):
        chunk = rows[start : start + size]
        start += size
        db.run(stmts.insert_rows(size), [value for row in chunk for value in row])


def chunk_sizes(n: int, per: int) -> list[int]:
    """Statement sizes for n rows: `per` as often as it fits, the rest in powers of two (99 = 64 +
    32 + 2 + 1). A connection keeps each distinct statement it ran compiled, ~100 KB for 100 rows:
    one statement per remainder size grew a writer by 22 MB over batches of 1 to 99 rows."""
    sizes = [per] * (n // per)
    rest = n % per
    bit = 1 << max(rest.bit_length() - 1, 0)
    while rest:
        if rest & bit:
            sizes.append(bit)
            rest -= bit
        bit >>= 1
    return sizes


def _new_rows(db: Db, stmts: Statements, batch: list[SpendRow]) -> list[SpendRow]:
    """The rows of `batch` not in the database yet, first of each request id, in batch order."""
    ids = [row[REQUEST_ID] for row in batch]
    stored: set[str] = set()
    for start in range(0, len(ids), _ID_CHUNK):
        part = ids[start : start + _ID_CHUNK]
        size = 1 << (len(part) - 1).bit_length()  # padded to a power of two: few statements
        part += [part[-1]] * (size - len(part))
        stored.update(r[0] for r in db.rows(stmts.existing(size), part))
    fresh = []
    for row in batch:
        rid = row[REQUEST_ID]
        if rid not in stored:
            stored.add(rid)
            fresh.append(row)
    return fresh


def _json(row: SpendRow) -> tuple[Any, ...]:
    """The row with its JSON columns serialized."""
    values = list(row)
    for i in JSON_AT:
        if values[i] is not None:
            values[i] = orjson.dumps(values[i]).decode()
    return tuple(values)


def _totals(rows: list[SpendRow]) -> dict[str, dict[str, float]]:
    """scope -> id -> the spend of `rows` counted against it (tags: once per row)."""
    totals: dict[str, dict[str, float]] = {scope: {} for scope in SCOPES}
    subjects = [(totals[scope], i) for scope, i in SUBJECT_AT]
    tags = totals["tag"]
    for row in rows:
        spend = row[SPEND]
        for into, i in subjects:
            ident = row[i]
            if ident:
                into[ident] = into.get(ident, 0.0) + spend
        if row[TAGS]:
            for tag in dict.fromkeys(row[TAGS]):
                tags[tag] = tags.get(tag, 0.0) + spend
    return totals


def reset_budgets(db: Db, stmts: Statements, now: float) -> int:
    """Zero the spend of every subject whose budget period ended; returns how many were reset."""
    count = 0
    for scope in t.SUBJECTS:
        for ident, duration, reset_at in db.rows(stmts.due[scope], (now,)):
            try:
                following = next_reset(reset_at, duration, now)
            except ValueError:
                continue
            db.run(stmts.reset[scope], (following, now, ident, reset_at))
            count += 1
    return count
