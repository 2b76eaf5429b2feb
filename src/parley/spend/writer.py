"""The background spend-log writer: rows queued by the request path, batched into the database.

`enqueue` is synchronous and cheap (called from after_call hooks): it appends the row tuple to a
thread-safe queue (and to the spend journal's in-memory list) and adds its cost to the totals the
budget ledger reads. Everything else happens off the request path, in one of two drivers:

- **SQLite file** (the embedded default): a dedicated thread, `parley-spend-writer`, with its own
  stdlib `sqlite3` connection (WAL, busy timeout) wakes as soon as `batch_size` rows wait and
  writes full batches, or every `interval` seconds and writes everything queued, each batch one
  transaction (`BEGIN IMMEDIATE`, multi-row INSERTs, `COMMIT`). The event loop does no SQL and
  holds no future per row; `flush()` (admin reads, shutdown) costs one future per call.
- **Postgres** (asyncpg) and in-memory SQLite: a task on the event loop runs the same batch code
  through `AsyncConnection.run_sync` (asyncpg is bound to the loop): the SQL is rendered once per
  dialect and rows are bound as tuples, so the loop's work per row is the driver's encoding.

A batch inserts the rows not stored yet and adds the cost of those to the spend totals of keys,
users, teams, customers and tags (`parley.spend.batch`); due budget periods are reset in the same
transaction every `RESET_CHECK_SECONDS`. A failed batch is kept and written first on the next try
(backoff doubling to 30 s); batches commit in enqueue order, so after each one the journal is told
how many rows are in the database. `committed_total` is raised right after a commit, so a budget
read racing a commit may count a just-committed row twice for a moment, never zero times. A
database outage is logged once when it starts (with the rows waiting) and once when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from parley.spend import batch as sql
from parley.spend.journal import SpendJournal
from parley.spend.rows import END_TIME, LEDGER_AT, SPEND, SUBJECT_AT, SpendRow, ledger_deltas
from parley.spend.sqlite_thread import MAX_BACKOFF, STOP_RETRY_SECONDS, SqliteThread, sqlite_file

log = logging.getLogger("parley.spend")

RESET_CHECK_SECONDS = 10.0
Write = Callable[[list[SpendRow], float, bool], sql.Written]
AsyncWrite = Callable[[list[SpendRow], float, bool], Awaitable[sql.Written]]


class Driver(Protocol):
    def kick(self) -> None: ...

    def start(self) -> None: ...

    async def flush(self) -> bool: ...

    async def stop(self, attempts: int) -> None: ...


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
        self._rows: deque[SpendRow] = deque()  # appended by the loop, taken by the driver
        self._held: list[SpendRow] = []  # the batch being written, or kept after a failed write
        self.queued_total: dict[str, float] = defaultdict(float)  # ledger key -> cost ever queued
        self.committed_total: dict[str, float] = {}  # ... and ever committed (written by the driver)
        self.enqueued = 0  # rows ever queued
        self.rows_written = 0  # rows committed (inserted, or already there)
        self.rows_inserted = 0  # ... of which new to the database
        self.failed_flushes = 0  # database writes that failed (read by the metrics)
        self._failing = False
        self._last_reset_check = 0.0
        self.driver: Driver = _driver_for(self)

    def enqueue(self, row: SpendRow) -> None:
        if self.journal is not None:
            self.journal.append(row)  # first: the journal numbers rows in the order they are queued
        self._rows.append(row)
        self.enqueued += 1
        spend = row[SPEND]
        if spend:
            totals = self.queued_total
            for prefix, i in LEDGER_AT:
                ident = row[i]
                if ident:
                    totals[prefix + ident] += spend
        if len(self._rows) >= self.batch_size:
            self.driver.kick()

    def pending(self, subject: str) -> float:
        return self.queued_total.get(subject, 0.0) - self.committed_total.get(subject, 0.0)

    def backlog(self) -> tuple[int, float | None]:
        """Rows not yet in the database, and the end time of the oldest (for the metrics)."""
        held, rows = self._held, self._rows
        oldest = None
        with contextlib.suppress(IndexError):  # the driver may take rows meanwhile
            oldest = held[0][END_TIME] if held else rows[0][END_TIME]
        return len(held) + len(rows), oldest

    def start(self) -> None:
        self.driver.start()

    async def flush(self) -> bool:
        """Write everything queued so far; False when a batch failed (its rows stay queued)."""
        return await self.driver.flush()

    async def stop(self, attempts: int = 5) -> None:
        """Write what is left (up to `attempts` tries, `STOP_RETRY_SECONDS` apart) and stop."""
        await self.driver.stop(attempts)
        left = self.backlog()[0]
        if left and self.journal is not None:
            log.error(
                "spend writer: %d rows could not be written at shutdown; they stay in the spend journal "
                "%s and the next start writes them",
                left,
                self.journal.directory,
            )
        elif left:
            log.error("spend writer: %d rows could not be written at shutdown", left)

    # --- used by the drivers, on the writing side -------------------------------------------------

    def drain(self, write: Write, everything: bool = True) -> bool:
        """Write batches until the queue is empty (`everything`), or while a full batch waits (a
        kick); False when one failed (it is kept for the next try)."""
        while True:
            if not everything and self._partial():
                return True
            batch, now, reset = self._next()
            if not batch and not reset:
                return True
            try:
                written = write(batch, now, reset)
            except Exception as e:
                self._failed(e)
                return False
            self._written(batch, written, now, reset)
            if not self._rows:
                return True

    async def drain_async(
        self, write: Callable[[list[SpendRow], float, bool], Awaitable[sql.Written]], everything: bool = True
    ) -> bool:
        """`drain` for a driver on the event loop."""
        while True:
            if not everything and self._partial():
                return True
            batch, now, reset = self._next()
            if not batch and not reset:
                return True
            try:
                written = await write(batch, now, reset)
            except Exception as e:
                self._failed(e)
                return False
            self._written(batch, written, now, reset)
            if not self._rows:
                return True

    def _partial(self) -> bool:
        """Less than a full batch waits (and no failed one). A kick writes full batches only: under
        load rows keep arriving while a batch is written, and writing whatever came meanwhile cut
        500-row batches to ~46 rows, each with its own transaction, WAL frames and GIL hand-offs.
        The rest waits for the next kick or the interval, whichever comes first."""
        return not self._held and len(self._rows) < self.batch_size

    def _next(self) -> tuple[list[SpendRow], float, bool]:
        """The batch to write (the one that failed last, else the oldest queued rows), the time, and
        whether due budget periods should be reset with it."""
        if not self._held:
            rows = self._rows
            self._held = [rows.popleft() for _ in range(min(len(rows), self.batch_size))]
        now = time.time()
        return self._held, now, now - self._last_reset_check >= RESET_CHECK_SECONDS

    def _written(self, batch: list[SpendRow], written: sql.Written, now: float, reset: bool) -> None:
        self._held = []
        if reset:
            self._last_reset_check = now
        committed = self.committed_total
        if written.inserted == len(batch):  # every row new: the totals the batch added are its own
            for scope, _ in SUBJECT_AT:
                for ident, amount in written.totals[scope].items():
                    key = f"{scope}:{ident}"
                    committed[key] = committed.get(key, 0.0) + amount
        else:  # the ledger counted every row queued, the database only the new ones
            for key, amount in ledger_deltas(batch).items():
                committed[key] = committed.get(key, 0.0) + amount
        self.rows_written += len(batch)
        self.rows_inserted += written.inserted
        if self.journal is not None:
            self.journal.committed(self.rows_written)
        if self._failing:
            self._failing = False
            log.warning("spend writer: database writes work again; %d rows still queued", self.backlog()[0])

    def _failed(self, error: Exception) -> None:
        """Count a failed write; log it once per outage, with how many rows wait and where."""
        self.failed_flushes += 1
        if self._failing:
            log.debug("spend writer: flush failed again: %r", error)
            return
        self._failing = True
        where = f"memory and the spend journal {self.journal.directory}" if self.journal else "memory"
        log.error(
            "spend writer: database write failed (%r); %d rows wait in %s, retrying with backoff",
            error,
            self.backlog()[0],
            where,
            exc_info=error,
        )


def _driver_for(writer: SpendWriter) -> Driver:
    path = sqlite_file(writer.engine)
    return SqliteThread(writer, path) if path is not None else LoopDriver(writer)


class LoopDriver:
    """Writes on the event loop through the async engine (Postgres; in-memory SQLite)."""

    def __init__(self, writer: SpendWriter) -> None:
        self.writer = writer
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._stmts: sql.Statements | None = None

    def kick(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        backoff = self.writer.interval
        while not self._stopping:
            kicked = True
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            except TimeoutError:
                kicked = False
            self._wake.clear()
            if self._stopping:
                break
            ok = await self.flush(everything=not kicked)
            backoff = self.writer.interval if ok else min(backoff * 2, MAX_BACKOFF)

    async def flush(self, everything: bool = True) -> bool:
        async with self._lock:
            return await self.writer.drain_async(self._write, everything)

    async def _write(self, batch: list[SpendRow], now: float, reset: bool) -> sql.Written:
        async with self.writer.engine.begin() as conn:
            stmts = self._statements(conn)
            written: sql.Written = await conn.run_sync(
                lambda sync: sql.write_batch(sql.DriverDb(sync), stmts, batch, now, reset)
            )
            return written

    def _statements(self, conn: AsyncConnection) -> sql.Statements:
        if self._stmts is None:
            self._stmts = sql.Statements(conn.dialect)
        return self._stmts

    async def stop(self, attempts: int) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        for _ in range(attempts):
            if not self.writer.backlog()[0] or await self.flush():
                break
            await asyncio.sleep(STOP_RETRY_SECONDS)


async def reset_budgets(conn: AsyncConnection, now: float) -> int:
    """Zero the spend of every subject whose budget period ended; returns how many were reset."""
    stmts = sql.Statements(conn.dialect)
    count: int = await conn.run_sync(lambda sync: sql.reset_budgets(sql.DriverDb(sync), stmts, now))
    return count
