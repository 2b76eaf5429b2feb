"""The SQLite spend writer runs off the event loop: with the loop held by a blocking call, queued
spend rows (and the key's spend) still reach the database. The writer that ran on the loop (through
aiosqlite) could not write a row while the loop was blocked."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from keys_support import Admin, gateway_config
from parley.core.context import new_request_id
from parley.spend.batch import SCOPES, Written
from parley.spend.rows import COLUMNS, from_mapping
from parley.spend.sqlite_thread import connect
from parley.spend.writer import SpendWriter
from parley.store import tables as t
from parley.store.db import make_engine, migrate

HOLD_SECONDS = 20.0  # the longest the loop is held while waiting for the rows


@dataclass
class Seen:
    before: int  # of the request ids, stored when the loop was blocked
    during: int  # ... stored before the loop was let go
    logged: float  # the spend of those rows, and the keys' spend, as read in the same snapshot
    keys: float


def _stored(conn: sqlite3.Connection, ids: list[str]) -> tuple[int, float, float]:
    marks = ", ".join("?" * len(ids))
    with conn:  # one read transaction: rows and totals from the same commit
        count, logged = conn.execute(
            f"SELECT count(*), coalesce(sum(spend), 0) FROM parley_spend_logs WHERE request_id IN ({marks})",
            ids,
        ).fetchone()
        (keys,) = conn.execute("SELECT coalesce(sum(spend), 0) FROM parley_keys").fetchone()
    return count, logged, keys


def hold_loop_until_stored(path: str, ids: list[str]) -> Seen:
    """Run ON the event loop: block it (no await) until every row of `ids` is in the database."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        before = _stored(conn, ids)[0]
        deadline = time.monotonic() + HOLD_SECONDS
        while True:
            count, logged, keys = _stored(conn, ids)
            if count == len(ids) or time.monotonic() > deadline:
                return Seen(before, count, logged, keys)
            time.sleep(0.02)
    finally:
        conn.close()


def test_spend_reaches_sqlite_while_the_gateway_loop_is_blocked(start_inprocess, fake_upstream, tmp_path):
    db = str(tmp_path / "parley.db")
    gw = start_inprocess(gateway_config(fake_upstream, db, spend_flush_interval=1.0, spend_batch_size=10_000))
    admin = Admin.of(gw)
    key = admin.post("/key/generate", {})["key"]
    client = gw.anthropic(api_key=key, max_retries=0)
    ids: list[str] = []
    for _ in range(5):  # a round whose rows were all written before the loop was held proves nothing
        for _ in range(20):
            message = client.messages.create(
                model="priced", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
            )
            ids.append(message._request_id or "")
        seen = gw.http.portal.call(hold_loop_until_stored, db, ids)
        if seen.before < len(ids):
            break
    assert seen.before < len(ids), "every row was written before the loop was held, five times"
    assert seen.during == len(ids)  # written while the loop could not run
    assert seen.logged > 0 and seen.keys == pytest.approx(seen.logged)  # the key's spend in the same commit
    rows = admin.wait_logs(len(ids), api_key=key)
    assert sorted(r["request_id"] for r in rows) == sorted(ids)
    assert admin.get("/key/info", key=key)["info"]["spend"] == pytest.approx(sum(r["spend"] for r in rows))


def _row(i: int) -> tuple:
    now = time.time()
    values = {
        "request_id": f"req-{i}",
        "api_key": "tok",
        "user": "u",
        "route": "/v1/messages",
        "spend": 0.001,
        "status": 200,
        "start_time": now,
        "end_time": now,
        "day": "2026-01-01",
        "request_tags": ["a"],
    }
    return from_mapping(values)


def test_five_thousand_rows_are_flushed_by_the_writer_thread_not_the_loop(tmp_path):
    """5000 queued rows, then the loop blocked (a sync wait, no await): the writer thread commits
    every row and the key's, user's and tag's spend; the loop's flush() then just confirms."""
    path = str(tmp_path / "units.db")

    async def run() -> tuple[Seen, tuple, bool]:
        eng = make_engine(path, {})
        await migrate(eng)
        async with eng.begin() as conn:
            await conn.execute(
                sa.insert(t.keys).values(token="tok", key_name="sk-...x", created_at=0, updated_at=0)
            )
        writer = SpendWriter(eng, interval=60, batch_size=500)
        writer.start()
        ids = [f"req-{i}" for i in range(5000)]
        for i in range(5000):
            writer.enqueue(_row(i))  # the 500th row wakes the writer thread
        seen = hold_loop_until_stored(path, ids)
        flushed = await writer.flush()
        async with eng.connect() as conn:
            totals = (
                (await conn.execute(sa.select(t.users.c.spend))).scalar(),
                (await conn.execute(sa.select(t.tags.c.spend))).scalar(),
            )
        await writer.stop()
        await eng.dispose()
        return seen, totals, flushed

    seen, (user, tag), flushed = asyncio.run(run())
    assert seen.during == 5000 and seen.keys == pytest.approx(5.0) and seen.logged == pytest.approx(5.0)
    assert user == pytest.approx(5.0) and tag == pytest.approx(5.0)
    assert flushed


def test_row_tuples_hold_every_spend_log_column():
    assert sorted(COLUMNS) == sorted(c.name for c in t.spend_logs.columns)
    row = from_mapping({"request_id": "r", "route": "/v1/messages", "status": 200, "spend": 0.5})
    assert (
        dict(zip(COLUMNS, row, strict=True))["prompt_tokens"] == 0
    )  # a column the mapping lacks: its default


def test_the_writer_thread_stores_bools_as_integers_and_nones_as_null(tmp_path):
    """Rows bound through sqlite3's adapters (bool -> int, None -> NULL) store what sqlite3 stored
    without them: the booleans as integer 0/1 (SQLAlchemy reads them back as bool), None as NULL."""
    path = str(tmp_path / "types.db")
    flags = {"estimated": True, "stream": False, "cache_hit": True}

    async def run() -> sa.Row:
        eng = make_engine(path, {})
        await migrate(eng)
        writer = SpendWriter(eng, interval=60)
        writer.start()
        writer.enqueue(from_mapping({**dict(zip(COLUMNS, _row(1), strict=True)), **flags}))
        assert await writer.flush()
        await writer.stop()
        async with eng.connect() as conn:
            stored = (await conn.execute(sa.select(t.spend_logs))).one()
        await eng.dispose()
        return stored

    stored = asyncio.run(run())
    assert (stored.estimated, stored.stream, stored.cache_hit) == (True, False, True)
    with sqlite3.connect(path) as conn:
        raw = conn.execute(
            "SELECT typeof(estimated), estimated, stream, cache_hit, typeof(team_id), typeof(ttft_ms), "
            "request_tags, retrieval FROM parley_spend_logs"
        ).fetchone()
    assert raw == ("integer", 1, 0, 1, "null", "null", '["a"]', "null")


def test_rows_inserted_a_hundred_to_a_statement_store_what_row_by_row_inserts_store(tmp_path):
    """The SQLite writer's multi-row INSERT (chunks of `SqliteDb.rows_per_insert`, a remainder,
    JSON and NULL columns, ids already stored, an id twice in one batch) leaves the spend log, the
    tags and the totals exactly as one INSERT per row does."""
    from sqlalchemy.dialects import sqlite as sqlite_dialect

    from parley.spend.batch import SqliteDb, Statements, write_batch

    def rows() -> list[tuple]:
        out = []
        for i in range(237):
            values = dict(zip(COLUMNS, _row(i), strict=True))
            values.update(start_time=1000.0 + i, end_time=1001.0 + i, spend=0.001 * (i % 7))
            if i % 3:
                values["request_tags"] = None if i % 2 else ["t1", "t2"]
            if i % 5 == 0:
                values["retrieval"] = {"chunks": i}
            out.append(from_mapping(values))
        return out + out[:3]  # an id twice in one batch

    def store(path: str, per: int) -> dict[str, list]:
        eng = make_engine(path, {})
        asyncio.run(migrate(eng))
        asyncio.run(eng.dispose())
        conn = sqlite3.connect(path, isolation_level=None)
        db = SqliteDb(conn)
        db.rows_per_insert = per  # (an instance attribute: the class keeps 100)
        stmts = Statements(sqlite_dialect.dialect())
        batch = rows()
        conn.execute("BEGIN")
        first = write_batch(db, stmts, batch[:40], 5000.0, False)  # 40 stored before the rest
        second = write_batch(db, stmts, batch, 5000.0, False)
        conn.execute("COMMIT")
        assert (first.inserted, second.inserted) == (40, 197)
        tables = {
            name: conn.execute(f"SELECT * FROM {name} ORDER BY 1, 2").fetchall()
            for name in ("parley_spend_logs", "parley_spend_log_tags", "parley_users", "parley_tags")
        }
        conn.close()
        return tables

    many, one_by_one = store(str(tmp_path / "many.db"), 100), store(str(tmp_path / "one.db"), 1)
    assert len(many["parley_spend_logs"]) == 237
    assert many["parley_spend_log_tags"] and many["parley_users"] and many["parley_tags"]
    assert many == one_by_one


@pytest.mark.parametrize("driver", ["thread", "loop"])
def test_a_kick_writes_full_batches_and_the_interval_writes_the_rest(tmp_path, driver):
    """`drain` after a kick stops once less than a full batch waits; after the interval (or a
    flush) it writes everything. A failed batch is retried first either way. The same for the
    SQLite thread's `drain` and the loop driver's (Postgres) `drain_async`."""
    eng = make_engine(str(tmp_path / "unused.db"), {})
    writer = SpendWriter(eng, interval=60, batch_size=100)
    for i in range(234):
        writer.enqueue(_row(i))
    sizes: list[int] = []
    fail = [True]

    def write(batch: list[tuple], now: float, reset: bool) -> Written:
        if fail[0]:
            fail[0] = False
            raise sqlite3.OperationalError("disk I/O error")
        sizes.append(len(batch))
        return Written(len(batch), {scope: {} for scope in SCOPES})

    async def write_async(batch: list[tuple], now: float, reset: bool) -> Written:
        return write(batch, now, reset)

    def drain(everything: bool) -> bool:
        if driver == "thread":
            return writer.drain(write, everything)
        return asyncio.run(writer.drain_async(write_async, everything))

    assert not drain(everything=False)  # the first batch failed: kept
    assert drain(everything=False)
    assert sizes == [100, 100] and writer.backlog()[0] == 34
    assert drain(everything=False) and sizes == [100, 100]  # 34 rows: not a batch
    assert drain(everything=True) and sizes == [100, 100, 34] and writer.backlog()[0] == 0
    asyncio.run(eng.dispose())


def test_under_a_steady_trickle_the_writer_thread_writes_full_batches(tmp_path):
    """Rows keep arriving while a batch is written (a slow disk: 20 ms per batch). Every batch the
    kicks write is full; only the last, written by the flush, is partial. Writing whatever came
    while the previous batch was written gave batches of a few rows, each its own transaction."""
    path = str(tmp_path / "trickle.db")

    async def run() -> list[int]:
        eng = make_engine(path, {})
        await migrate(eng)
        writer = SpendWriter(eng, interval=60, batch_size=100)
        thread = writer.driver
        real = thread._write  # type: ignore[attr-defined]
        sizes: list[int] = []

        def slow(batch: list[tuple], now: float, reset: bool) -> Written:
            sizes.append(len(batch))
            time.sleep(0.02)
            return real(batch, now, reset)

        thread._write = slow  # type: ignore[attr-defined]
        writer.start()
        for i in range(1050):
            writer.enqueue(_row(i))
            if i % 2:
                await asyncio.sleep(0.002)  # under a row per millisecond: ~20 arrive per write
        assert await writer.flush()
        await writer.stop()
        async with eng.connect() as conn:
            stored = (await conn.execute(sa.select(sa.func.count()).select_from(t.spend_logs))).scalar()
        await eng.dispose()
        assert stored == 1050
        return sizes

    sizes = asyncio.run(run())
    assert sum(sizes) == 1050 and len(sizes) >= 2
    assert all(size == 100 for size in sizes[:-1]) and sizes[-1] == 50, sizes


def test_request_ids_sort_in_the_order_they_were_made():
    """Request ids lead with the time in milliseconds, so the spend log's primary key grows at its
    right edge (random ids dirtied a different index page per row). 80 random bits follow."""
    made = []
    for _ in range(4):
        made += [new_request_id() for _ in range(1000)]
        time.sleep(0.002)
    assert all(re.fullmatch(r"req_[0-9a-f]{32}", rid) for rid in made)
    assert len(set(made)) == len(made)
    stamps = [int(rid[4:16], 16) for rid in made]
    assert stamps == sorted(stamps) and stamps[-1] - stamps[0] >= 6
    assert abs(stamps[-1] - time.time() * 1000) < 5000
    by_ms: dict[int, set[str]] = {}
    for rid in made:
        by_ms.setdefault(int(rid[4:16], 16), set()).add(rid[16:])
    assert sum(len(v) for v in by_ms.values()) == len(made)  # the random part differs within a millisecond


def test_the_writer_keeps_statement_journals_in_memory(tmp_path):
    """A multi-row INSERT's statement journal stays in memory: on disk, SQLite created and
    unlinked a temporary file in /var/tmp for each batch."""
    conn = connect(str(tmp_path / "temp.db"))
    assert conn.execute("PRAGMA temp_store").fetchone() == (2,)  # 2: MEMORY
    conn.close()


def test_batches_of_any_size_use_a_few_statements_and_store_every_row(tmp_path):
    """A connection keeps every distinct statement it ran compiled (~100 KB for a 100-row INSERT):
    batches of 1 to 130 rows run at most 8 INSERT shapes (100 and powers of two up to 64) and 9 id
    lookups (padded to powers of two, 1 to 256), and store every row once."""
    from sqlalchemy.dialects import sqlite as sqlite_dialect

    from parley.spend.batch import SqliteDb, Statements, write_batch

    path = str(tmp_path / "shapes.db")
    eng = make_engine(path, {})
    asyncio.run(migrate(eng))
    asyncio.run(eng.dispose())
    conn = connect(path)
    seen: set[str] = set()

    class Recording(SqliteDb):
        def rows(self, sql, params):  # type: ignore[no-untyped-def]
            seen.add(sql)
            return super().rows(sql, params)

        def run(self, sql, params):  # type: ignore[no-untyped-def]
            seen.add(sql)
            super().run(sql, params)

    db, stmts, i = Recording(conn), Statements(sqlite_dialect.dialect()), 0
    for size in range(1, 131):
        batch = [_row(i + k) for k in range(size)]
        i += size
        conn.execute("BEGIN IMMEDIATE")
        assert write_batch(db, stmts, batch, 5000.0, False).inserted == size
        conn.execute("COMMIT")
    inserts = {sql for sql in seen if sql.startswith("INSERT INTO parley_spend_logs")}
    lookups = {sql for sql in seen if sql.startswith("SELECT")}
    assert len(inserts) <= 8 and len(lookups) <= 9, (len(inserts), len(lookups))
    stored = conn.execute("SELECT count(*), count(DISTINCT request_id) FROM parley_spend_logs").fetchone()
    assert stored == (i, i) and i == 130 * 131 // 2
    conn.close()
