"""The SQLite spend writer's own thread, with its own stdlib `sqlite3` connection.

The event loop only appends row tuples to the writer's queue and, when `batch_size` rows wait, sets
an event. The thread wakes on that and writes full batches, or every `interval` seconds and writes
everything queued, each batch in one `BEGIN IMMEDIATE ... COMMIT` (the write lock is taken up
front, so the read that picks the new rows and the inserts see the same database; other
connections wait on the busy timeout, never fail).
`sqlite3` releases the GIL while SQLite executes, so the loop keeps running meanwhile.

`flush()` (admin reads, journal replay) registers a future with the number of rows queued so far and
wakes the thread, which resolves it once that many rows are committed (False when a write failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from typing import TYPE_CHECKING

from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.core.runtime import name_os_thread
from parley.spend.batch import SqliteDb, Statements, Written, write_batch
from parley.spend.rows import SpendRow

if TYPE_CHECKING:
    from parley.spend.writer import SpendWriter

log = logging.getLogger("parley.spend")

THREAD_NAME = "parley-spend-writer"
MAX_BACKOFF = 30.0
STOP_RETRY_SECONDS = 0.5
BUSY_TIMEOUT_SECONDS = 30
STATEMENTS = 128  # compiled statements kept: the writer's ~17, and its `SELECT ... IN` of each size


def sqlite_file(engine: AsyncEngine) -> str | None:
    """The SQLite file an engine writes to; None for Postgres and in-memory databases."""
    url = engine.url
    db = url.database
    if url.get_backend_name() != "sqlite" or not db or db == ":memory:" or db.startswith("file:"):
        return None
    return db


def register_adapters() -> None:
    """Bind None and bool through sqlite3's adapter registry (idempotent; values stored unchanged).

    sqlite3 binds only exact int, float, str and bytearray directly; any other value (None, bool)
    goes through `pysqlite_microprotocols_adapt`, which misses the registry, then formats an
    AttributeError for `PrepareProtocol.__adapt__` before binding the value as it is: ~2k
    instructions per value, and a spend row holds a dozen Nones and three bools. A registered
    adapter is found first. None still binds as NULL (the adapter is an empty dict's `get`, a C
    function that returns None), a bool as the integer 0 or 1 (as sqlite3 binds an int subclass),
    so nothing stored changes; the registry is process-wide, so the engine's aiosqlite connections
    bind the same values the same way.
    """
    empty: dict[None, None] = {}
    sqlite3.register_adapter(type(None), empty.get)  # a C function: cheaper to call than a `def`
    sqlite3.register_adapter(bool, int)


def connect(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, the gateway's busy timeout."""
    register_adapters()
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, cached_statements=STATEMENTS
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
    # A multi-row INSERT keeps a statement journal (the pages it changed, to undo it alone); past
    # 64 KiB SQLite spills it to a new file in /var/tmp, created and unlinked per batch (~0.3 page
    # writes per row). In memory it is a copy.
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


class SqliteThread(threading.Thread):
    def __init__(self, writer: SpendWriter, path: str) -> None:
        super().__init__(name=THREAD_NAME, daemon=True)
        self.writer = writer
        self.path = path
        self._stmts = Statements(sqlite.dialect())
        self._conn: sqlite3.Connection | None = None
        self._wake = threading.Event()
        self._guard = threading.Lock()  # _waiters, _exited
        self._waiters: list[tuple[int, asyncio.Future[bool]]] = []  # (rows queued before, future)
        self._exited = False
        self._stopping = False
        self._attempts = 5

    # --- the event loop's side --------------------------------------------------------------------

    def kick(self) -> None:
        if not self._wake.is_set():
            self._wake.set()

    def start(self) -> None:
        if self.ident is None:
            super().start()

    async def flush(self) -> bool:
        self.start()
        future = asyncio.get_running_loop().create_future()
        with self._guard:
            if self._exited:
                return not self.writer.backlog()[0]
            self._waiters.append((self.writer.enqueued, future))
        self._wake.set()
        return await future

    async def stop(self, attempts: int) -> None:
        if self.ident is None and not self.writer.backlog()[0]:
            return
        self.start()
        self._attempts = attempts
        self._stopping = True
        self._wake.set()
        await asyncio.to_thread(self.join)

    # --- the thread -------------------------------------------------------------------------------

    def run(self) -> None:
        name_os_thread()
        backoff = self.writer.interval
        try:
            while not self._stopping:
                kicked = self._wake.wait(backoff)
                self._wake.clear()
                if self._stopping:
                    break
                with self._guard:
                    everything = not kicked or bool(self._waiters)  # the interval, or a flush
                ok = self._drain(everything)
                backoff = self.writer.interval if ok else min(backoff * 2, MAX_BACKOFF)
            for _ in range(self._attempts):
                if not self.writer.backlog()[0] or self._drain():
                    break
                time.sleep(STOP_RETRY_SECONDS)
        finally:
            self._close()
            with self._guard:
                self._exited = True
                waiters, self._waiters = self._waiters, []
            for _, future in waiters:
                _resolve(future, not self.writer.backlog()[0])

    def _drain(self, everything: bool = True) -> bool:
        try:
            ok = self.writer.drain(self._write, everything)
        except Exception:  # not the database's doing (that is caught in drain): keep the thread alive
            log.exception("spend writer: unexpected error")
            ok = False
        self._answer(ok)
        return ok

    def _answer(self, ok: bool) -> None:
        """Resolve the flushes whose rows are all committed (every flush, when a write failed)."""
        written = self.writer.rows_written
        with self._guard:
            done = [f for target, f in self._waiters if not ok or target <= written]
            self._waiters = [(target, f) for target, f in self._waiters if ok and target > written]
        for future in done:
            _resolve(future, ok)

    def _write(self, batch: list[SpendRow], now: float, reset: bool) -> Written:
        conn = self._conn
        if conn is None:
            conn = self._conn = connect(self.path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            written = write_batch(SqliteDb(conn), self._stmts, batch, now, reset)
            conn.execute("COMMIT")
        except BaseException:
            self._close()  # rolls back; the next try opens a fresh connection
            raise
        return written

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None


def _resolve(future: asyncio.Future[bool], ok: bool) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: no one waits any more
        future.get_loop().call_soon_threadsafe(_set, future, ok)


def _set(future: asyncio.Future[bool], ok: bool) -> None:
    if not future.done():
        future.set_result(ok)
