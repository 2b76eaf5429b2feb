"""No lost spend: the local spend journal survives kill -9 and database outages, and its replay is
idempotent (real `parley serve` processes; what a user sees through the admin API)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from pathlib import Path

import anthropic
import orjson
import pytest

from keys_support import Admin, create_pg_database, drop_pg_database, gateway_config
from parley.spend.journal import SpendJournal, claim_orphans, database_key
from parley.spend.rows import COLUMNS, from_mapping
from parley.store.db import normalize_url
from parley.store.tables import spend_logs
from parley.testing.inprocess import anthropic_client
from parley.testing.postgres import PgServer, postgres_available
from parley.testing.procs import Gateway

N = 40


async def _send(url: str, key: str, n: int) -> list[str]:
    client = anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0, timeout=30)

    async def one() -> str:
        message = await client.messages.create(
            model="claude-haiku-4-5", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
        assert message._request_id
        return message._request_id

    try:
        return list(await asyncio.gather(*(one() for _ in range(n))))
    finally:
        await client.close()


def send(gateway: Gateway, key: str, n: int = N) -> list[str]:
    """`n` concurrent requests through the anthropic SDK; their request ids."""
    return asyncio.run(_send(gateway.url, key, n))


def assert_all_counted(admin: Admin, key: str, ids: list[str]) -> None:
    rows = admin.wait_logs(len(ids), api_key=key)
    assert sorted(r["request_id"] for r in rows) == sorted(ids)
    spend = admin.get("/key/info", key=key)["info"]["spend"]
    assert spend > 0
    assert spend == pytest.approx(sum(r["spend"] for r in rows))


def kill9(gateway: Gateway) -> None:
    os.killpg(gateway.proc.pid, signal.SIGKILL)
    gateway.proc.wait()
    gateway.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield str(tmp_path / "parley.db")
        return
    name, url = create_pg_database()
    yield url
    drop_pg_database(name)


def test_kill9_loses_no_spend(fake_upstream, upstream, database_url, tmp_path):
    """Nothing is flushed before the kill (a 60 s flush interval): every row comes from the journal."""
    journal = {} if database_url.endswith(".db") else {"spend_journal_dir": str(tmp_path / "journal")}
    config = gateway_config(fake_upstream, database_url, spend_flush_interval=60, **journal)
    first = Gateway(config)
    try:
        key = Admin(first.url).post("/key/generate", {})["key"]
        ids = send(first, key)
        time.sleep(0.15)  # > the 50 ms fsync window
    finally:
        kill9(first)
    second = Gateway(config)
    try:
        assert_all_counted(Admin(second.url), key, ids)
        assert f"spend journal: {N} rows from 1 journal(s)" in second.log()
        assert f"; {N} were missing from the database" in second.log()
    finally:
        second.stop()
    if database_url.endswith(".db"):  # the default place: next to the SQLite file, empty after a clean stop
        assert [p.name for p in (tmp_path / "parley.db.spend-journal").iterdir()] == []


def test_sqlite_outage_then_sigterm_keeps_rows(fake_upstream, upstream, tmp_path):
    db = tmp_path / "parley.db"
    config = gateway_config(fake_upstream, str(db))
    first = Gateway(config)
    admin = Admin(first.url)
    try:
        key = admin.post("/key/generate", {})["key"]
        ids = send(first, key, 1)
        admin.wait_logs(1, api_key=key)
        with sqlite3.connect(db) as conn:  # the database now refuses spend rows
            conn.execute(
                "CREATE TRIGGER outage BEFORE INSERT ON parley_spend_logs "
                "BEGIN SELECT RAISE(ABORT, 'down'); END"
            )
        ids += send(first, key)
        time.sleep(0.5)  # several failed flushes
    finally:
        assert first.stop() is not None  # SIGTERM
    log = first.log()
    assert log.count("database write failed") == 1, log
    assert f"{N} rows could not be written at shutdown; they stay in the spend journal" in log
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER outage")
    second = Gateway(config)
    try:
        assert_all_counted(Admin(second.url), key, ids)
    finally:
        second.stop()


@pytest.fixture
def own_postgres():
    if not postgres_available():
        pytest.skip("no PostgreSQL 15 binaries")
    pg = PgServer()
    pg.start()
    yield pg
    pg.remove()


def test_postgres_outage_then_sigterm_keeps_rows(fake_upstream, upstream, own_postgres, tmp_path):
    config = gateway_config(
        fake_upstream, own_postgres.url, spend_journal_dir=str(tmp_path / "journal"), database_pool_timeout=2
    )
    first = Gateway(config)
    admin = Admin(first.url)
    try:
        key = admin.post("/key/generate", {})["key"]
        ids = send(first, key, 1)
        admin.wait_logs(1, api_key=key)
        own_postgres.stop()
        ids += send(first, key)  # the key is cached: requests still pass
        time.sleep(0.5)
    finally:
        first.stop()  # SIGTERM
    log = first.log()
    assert log.count("database write failed") == 1, log
    assert f"{N} rows could not be written at shutdown; they stay in the spend journal" in log
    own_postgres.start()
    second = Gateway(config)
    try:
        assert_all_counted(Admin(second.url), key, ids)
        assert f"; {N} were missing from the database" in second.log()
    finally:
        second.stop()


def _orphan(directory: Path, db_url: str, rows: list[dict], torn: bool = False) -> None:
    """A journal as a killed process leaves it: an unlocked lock file and one segment."""
    name = f"spend-{database_key(normalize_url(db_url))}-99999999-deadbeef"
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.lock").touch()
    lines = b"".join(orjson.dumps(row) + b"\n" for row in rows)
    (directory / f"{name}.000001.jsonl").write_bytes(lines + (b'{"request_id": "torn' if torn else b""))


def test_replay_is_idempotent(start_inprocess, fake_upstream, upstream, tmp_path):
    db, journal = str(tmp_path / "parley.db"), tmp_path / "journal"
    config = gateway_config(fake_upstream, db, spend_journal_dir=str(journal))
    gw = start_inprocess(config)
    admin = Admin.of(gw)
    key = admin.post("/key/generate", {})["key"]
    admin_ids = send_inprocess(gw, key)
    (row,) = admin.wait_logs(1, api_key=key)
    base = admin.get("/key/info", key=key)["info"]["spend"]
    gw.stop()
    now = time.time()
    stored = {k: row[k] for k in (str(c.name) for c in spend_logs.c) if k in row} | {
        "start_time": now,
        "end_time": now,
    }
    extra = [dict(stored, request_id=f"replayed-{i}", spend=0.5) for i in range(2)]
    for _ in range(2):  # the second time: as if a replay crashed before deleting the journal
        _orphan(journal, db, [stored, *extra, {"request_id": "no-columns"}], torn=True)
        gw = start_inprocess(config)
        admin = Admin.of(gw)
        rows = admin.wait_logs(3, api_key=key)
        assert sorted(r["request_id"] for r in rows) == sorted([*admin_ids, "replayed-0", "replayed-1"])
        assert admin.get("/key/info", key=key)["info"]["spend"] == pytest.approx(base + 1.0)
        gw.stop()
    assert sorted(p.name for p in journal.iterdir()) == []


def send_inprocess(gw, key: str) -> list[str]:
    client = anthropic_client(gw, api_key=key, max_retries=0)
    message = client.messages.create(
        model="claude-haiku-4-5", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    )
    return [message._request_id or ""]


def test_journal_segments_go_once_committed_and_live_journals_are_not_claimed(tmp_path):
    journal = SpendJournal(tmp_path, "k", fsync_seconds=3600, segment_seconds=0)
    journal.open()
    try:
        for i in range(3):
            journal.append({"request_id": f"r{i}", "spend": 1.0})
        journal.sync()
        assert claim_orphans(tmp_path, "k").journals == 0  # locked by a live journal
        (segment,) = tmp_path.glob("*.rows")
        assert len(segment.read_bytes().splitlines()) == 4  # the columns, then one line per row
        journal.committed(2)
        journal.sync()
        assert segment.exists()  # r2 is not in the database yet
        journal.committed(3)
        journal.sync()
        assert not segment.exists()
        journal.append({"request_id": "r3", "spend": 1.0})
    finally:
        assert journal.close() == 1  # r3 stays on disk for the next start
    orphans = claim_orphans(tmp_path, "k")
    assert [r["request_id"] for r in orphans.rows] == ["r3"] and orphans.journals == 1
    orphans.release()
    assert list(tmp_path.iterdir()) == []


def test_row_tuples_come_back_from_a_kept_journal_as_they_were_queued(tmp_path):
    """Tuples are journaled as JSON arrays under the segment's column header; replay reads them
    back as mappings that rebuild the same tuples (a torn last line is skipped)."""
    base = {"route": "/v1/messages", "status": 200, "spend": 0.25, "stream": True, "day": "2026-11-30"}
    rows = [
        from_mapping({**base, "request_id": "a", "request_tags": ["x", "y"], "start_time": 1.5}),
        from_mapping({**base, "request_id": "b", "retrieval": {"stores": ["s"], "chunks": 2}}),
    ]
    journal = SpendJournal(tmp_path, "k", fsync_seconds=3600)
    journal.open()
    for row in rows:
        journal.append(row)
    assert journal.close() == 2
    (segment,) = tmp_path.glob("*.rows")
    assert orjson.loads(segment.read_bytes().splitlines()[0]) == {"columns": list(COLUMNS)}
    with segment.open("ab") as f:
        f.write(b'["torn", null')
    orphans = claim_orphans(tmp_path, "k")
    assert [from_mapping(r) for r in orphans.rows] == rows
    orphans.release()
