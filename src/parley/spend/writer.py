"""The background spend-log writer: batches rows off the request path into the database.

`enqueue` is synchronous and cheap (called from after_call hooks). A loop flushes every `interval`
seconds or as soon as `batch_size` rows wait, in one transaction per batch: insert the log rows
(ignoring request ids already stored, so a retried flush never double-counts), then add the cost of
the rows actually inserted to the spend totals of keys, users, teams, customers and tags, in a fixed
order (no deadlocks between instances). Due budget periods are reset in the same transaction.
A failed flush keeps its rows and retries; `stop` flushes what is left.

With a `SpendJournal` every enqueued row is also appended to the local journal (on disk within the
journal's fsync window) and the journal is told, after each committed batch, how many rows are in
the database; flushes run one at a time, so rows are committed in the order they were enqueued.
A database outage is logged once when it starts (with the rows waiting) and once when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.spend.journal import SpendJournal
from parley.spend.log_insert import LogInsert
from parley.spend.periods import next_reset
from parley.store import tables as t

log = logging.getLogger("parley.spend")

RESET_CHECK_SECONDS = 10.0
_UPSERT_TABLES = {"user": t.users, "customer": t.customers}  # created on first spend
_UPDATE_TABLES = {"key": t.keys, "team": t.teams}  # must exist already


def subjects_of(row: dict[str, Any]) -> list[str]:
    """Ledger keys ("key:<hash>", "user:<id>", ...) a spend row counts against."""
    out = []
    for scope, column in (
        ("key", "api_key"),
        ("user", "user"),
        ("team", "team_id"),
        ("customer", "end_user"),
    ):
        if row.get(column):
            out.append(f"{scope}:{row[column]}")
    return out


class SpendWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        interval: float = 0.5,
        batch_size: int = 500,
        journal: SpendJournal | None = None,
    ) -> None:
        self.engine = engine
        self.journal = journal
        self.interval = interval
        self.batch_size = batch_size
        self.queue: list[dict[str, Any]] = []
        self.queued_total: dict[str, float] = defaultdict(float)  # ledger key -> cost ever queued
        self.committed_total: dict[str, float] = defaultdict(float)  # ... and ever committed
        self.rows_written = 0  # rows committed (inserted, or already there)
        self.rows_inserted = 0  # ... of which new to the database
        self.failed_flushes = 0  # database writes that failed (read by the metrics)
        self._failing = False
        self._flush_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._last_reset_check = 0.0
        self._logs: LogInsert | None = None  # the spend-log INSERT, rendered for the engine's dialect

    def enqueue(self, row: dict[str, Any]) -> None:
        self.queue.append(row)
        if self.journal is not None:
            self.journal.append(row)
        for subject in subjects_of(row):
            self.queued_total[subject] += row["spend"]
        if len(self.queue) >= self.batch_size:
            self._wake.set()

    def pending(self, subject: str) -> float:
        return self.queued_total.get(subject, 0.0) - self.committed_total.get(subject, 0.0)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, attempts: int = 5) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        for _ in range(attempts):
            if not self.queue or await self.flush():
                break
            await asyncio.sleep(0.5)
        if self.queue and self.journal is not None:
            log.error(
                "spend writer: %d rows could not be written at shutdown; they stay in the spend journal "
                "%s and the next start writes them",
                len(self.queue),
                self.journal.directory,
            )
        elif self.queue:
            log.error("spend writer: %d rows could not be written at shutdown", len(self.queue))

    async def _run(self) -> None:
        backoff = self.interval
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            self._wake.clear()
            if self._stopping:
                break
            backoff = self.interval if await self.flush() else min(backoff * 2, 30.0)

    async def flush(self) -> bool:
        """Write everything queued; False when a batch failed (its rows stay queued)."""
        async with self._flush_lock:
            while self.queue or self._reset_due():
                batch = self.queue[: self.batch_size]
                del self.queue[: len(batch)]
                try:
                    inserted = await self.write_batch(batch)
                except Exception as e:
                    self.queue[:0] = batch
                    self.failed_flushes += 1
                    self._outage(e)
                    return False
                self._committed(batch, inserted)
                if not self.queue:
                    break
            return True

    def _committed(self, batch: list[dict[str, Any]], inserted: int) -> None:
        for row in batch:
            for subject in subjects_of(row):
                self.committed_total[subject] += row["spend"]
        self.rows_written += len(batch)
        self.rows_inserted += inserted
        if self.journal is not None:
            self.journal.committed(self.rows_written)
        if self._failing:
            self._failing = False
            log.warning("spend writer: database writes work again; %d rows still queued", len(self.queue))

    def _outage(self, error: Exception) -> None:
        """Log a failed flush once per outage, with how many rows wait and where."""
        if self._failing:
            log.debug("spend writer: flush failed again: %r", error)
            return
        self._failing = True
        where = f"memory and the spend journal {self.journal.directory}" if self.journal else "memory"
        log.error(
            "spend writer: database write failed (%r); %d rows wait in %s, retrying with backoff",
            error,
            len(self.queue),
            where,
            exc_info=error,
        )

    def _reset_due(self) -> bool:
        return time.time() - self._last_reset_check >= RESET_CHECK_SECONDS

    async def write_batch(self, batch: list[dict[str, Any]]) -> int:
        """Insert a batch and add the cost of its new rows to the totals; how many were new."""
        async with self.engine.begin() as conn:
            if self._reset_due():
                await reset_budgets(conn, time.time())
                self._last_reset_check = time.time()
            if not batch:
                return 0
            insert = _insert_for(conn)
            if self._logs is None:
                self._logs = LogInsert(conn.dialect)
            # rows journaled before a column existed lack its key: they go in an insert of their own
            rows = await self._logs.write(conn, batch)
            await _write_tags(conn, insert, rows)
            await _add_totals(conn, insert, rows)
            return len(rows)


def _insert_for(conn) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


async def _write_tags(conn, insert, rows: list[dict[str, Any]]) -> None:
    pairs = [
        {"request_id": row["request_id"], "tag": tag}
        for row in rows
        for tag in dict.fromkeys(row.get("request_tags") or ())
    ]
    if pairs:
        await conn.execute(insert(t.spend_log_tags).on_conflict_do_nothing(), pairs)


async def _add_totals(conn, insert, rows: list[dict[str, Any]]) -> None:
    deltas: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        for subject in subjects_of(row):
            scope, _, ident = subject.partition(":")
            deltas[scope][ident] += row["spend"]
        for tag in dict.fromkeys(row.get("request_tags") or ()):
            deltas["tag"][tag] += row["spend"]
    now = time.time()
    for scope in ("key", "team", "user", "customer", "tag"):  # fixed order: no deadlocks
        items = sorted(deltas.get(scope, {}).items())
        if not items:
            continue
        if scope in _UPDATE_TABLES:
            table, id_col = t.SUBJECTS[scope]
            stmt = (
                sa.update(table)
                .where(table.c[id_col] == sa.bindparam("_id"))
                .values(spend=table.c.spend + sa.bindparam("_delta"), updated_at=now)
            )
            await conn.execute(stmt, [{"_id": i, "_delta": d} for i, d in items])
            continue
        table, id_col = (t.tags, "tag") if scope == "tag" else t.SUBJECTS[scope]
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[id_col], set_={"spend": table.c.spend + stmt.excluded.spend, "updated_at": now}
        )
        await conn.execute(
            stmt, [{id_col: i, "spend": d, "created_at": now, "updated_at": now} for i, d in items]
        )


async def reset_budgets(conn, now: float) -> int:
    """Zero the spend of every subject whose budget period ended; returns how many were reset."""
    count = 0
    for table, id_col in t.SUBJECTS.values():
        due = (
            await conn.execute(
                sa.select(table.c[id_col], table.c.budget_duration, table.c.budget_reset_at)
                .where(table.c.budget_reset_at <= now, table.c.budget_duration.is_not(None))
                .order_by(table.c[id_col])
            )
        ).all()
        for ident, duration, reset_at in due:
            try:
                following = next_reset(reset_at, duration, now)
            except ValueError:
                continue
            await conn.execute(
                sa.update(table)
                .where(table.c[id_col] == ident, table.c.budget_reset_at == reset_at)
                .values(spend=0.0, budget_reset_at=following, updated_at=now)
            )
            count += 1
    return count
