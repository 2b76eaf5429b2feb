"""Pieces of keys and spend on their own: periods, prices, identity, the writer, the ledger."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
import sqlalchemy as sa

from keys_support import create_pg_database, drop_pg_database
from parley.filters.virtual_keys import model_allowed
from parley.pipeline.metadata import parse_user_id as parse_claude_code_user
from parley.spend.ledger import BudgetLine, LocalLedger, _Entry
from parley.spend.periods import add_duration, next_reset, parse_duration
from parley.spend.pricing import PriceTable
from parley.spend.rows import from_mapping
from parley.spend.writer import SpendWriter
from parley.store import tables as t
from parley.store.db import make_engine, migrate


def ts(*args) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


def test_durations_and_periods():
    assert parse_duration("30m") == (30, "m") and parse_duration("1mo") == (1, "mo")
    for bad in ("", "5", "1y", "0d", "-1h", None):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert add_duration(ts(2026, 1, 1), "1h") == ts(2026, 1, 1, 1)
    assert add_duration(ts(2026, 1, 31), "1mo") == ts(2026, 2, 28)
    assert add_duration(ts(2026, 11, 15), "2mo") == ts(2027, 1, 15)
    assert next_reset(ts(2026, 1, 1), "7d", ts(2026, 1, 20)) == ts(2026, 1, 22)


def test_price_lookup():
    prices = PriceTable()
    sonnet = prices.for_model("claude-sonnet-4-5-20250929")
    assert (sonnet.input, sonnet.output, sonnet.cache_read) == (3e-6, 15e-6, 0.3e-6)
    assert prices.for_model("anthropic/claude-opus-4-1").output == 75e-6
    assert prices.for_model("gpt-4o-mini-2024-07-18").input == 0.15e-6  # not gpt-4o's
    assert not prices.for_model("no-such-model").known


def test_identity_parsing_and_model_patterns():
    assert parse_claude_code_user('{"device_id":"d","account_uuid":"a","session_id":"s"}') == ("a", "s")
    assert parse_claude_code_user('{"device_id":"d","account_uuid":"","session_id":"s"}') == ("d", "s")
    assert parse_claude_code_user("plain-user") == ("plain-user", None)
    assert model_allowed((), "x") and model_allowed(("claude-*",), "claude-haiku-4-5")
    assert not model_allowed(("claude-*",), "gpt-4o") and model_allowed(("*",), "gpt-4o")


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url, name = str(tmp_path / "units.db"), None
    else:
        name, url = create_pg_database()
    eng = make_engine(url, {})
    asyncio.run(migrate(eng))
    asyncio.run(eng.dispose())
    yield url
    if name:
        drop_pg_database(name)


def row(request_id: str, spend: float, token: str = "tok") -> dict:
    now = time.time()
    return {
        "request_id": request_id,
        "api_key": token,
        "key_alias": None,
        "user": "u",
        "team_id": None,
        "end_user": "c",
        "session_id": None,
        "request_tags": ["a", "b"],
        "route": "/v1/messages",
        "model": "m",
        "model_id": None,
        "custom_llm_provider": None,
        "upstream_model": None,
        "prompt_tokens": 1,
        "completion_tokens": 1,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "total_tokens": 2,
        "spend": spend,
        "estimated": False,
        "status": 200,
        "error_type": None,
        "stream": False,
        "cache_hit": False,
        "latency_ms": 1.0,
        "ttft_ms": None,
        "start_time": now,
        "end_time": now,
        "day": "2026-01-01",
    }


def test_writer_is_idempotent_on_request_id(engine):
    async def run() -> dict:
        eng = make_engine(engine, {})
        writer = SpendWriter(eng)
        async with eng.begin() as conn:
            await conn.execute(
                sa.insert(t.keys).values(token="tok", key_name="sk-...x", created_at=0, updated_at=0)
            )
        batch = [row("r1", 0.5), row("r2", 0.25)]
        for r in batch:
            writer.enqueue(from_mapping(r))
        assert await writer.flush()
        for r in [*batch, row("r3", 1.0)]:  # a retried flush plus one new row
            writer.enqueue(from_mapping(r))
        assert await writer.flush()
        assert (writer.rows_written, writer.rows_inserted) == (5, 3)
        await writer.stop()
        async with eng.connect() as conn:
            out = {
                "logs": (await conn.execute(sa.select(sa.func.count()).select_from(t.spend_logs))).scalar(),
                "key": (await conn.execute(sa.select(t.keys.c.spend))).scalar(),
                "user": (await conn.execute(sa.select(t.users.c.spend))).scalar(),
                "customer": (await conn.execute(sa.select(t.customers.c.spend))).scalar(),
                "tags": dict((await conn.execute(sa.select(t.tags.c.tag, t.tags.c.spend))).all()),
            }
        await eng.dispose()
        return out

    out = asyncio.run(run())
    assert out["logs"] == 3
    assert out["key"] == out["user"] == out["customer"] == pytest.approx(1.75)
    assert out["tags"] == {"a": pytest.approx(1.75), "b": pytest.approx(1.75)}


def test_writer_batch_throughput(engine, capsys):
    async def run() -> float:
        eng = make_engine(engine, {})
        writer = SpendWriter(eng, batch_size=500)
        for i in range(5000):
            writer.enqueue(from_mapping(row(f"req-{i}", 0.001)))
        began = time.perf_counter()
        assert await writer.flush()
        elapsed = time.perf_counter() - began
        assert writer.rows_written == 5000 and writer.pending("key:tok") == pytest.approx(0)
        await writer.stop()
        await eng.dispose()
        return 5000 / elapsed

    rate = asyncio.run(run())
    with capsys.disabled():
        print(
            f"\n  spend writer ({'postgresql' if engine.startswith('postgresql') else 'sqlite'}): "
            f"{rate:,.0f} rows/s in batches of 500"
        )
    assert rate > 200


def test_local_ledger_reserves_atomically(tmp_path):
    async def run() -> list[float]:
        eng = make_engine(str(tmp_path / "ledger.db"), {})
        await migrate(eng)
        ledger = LocalLedger(eng, lambda k: (0.0, 0.0), asyncio.ensure_future)
        line = BudgetLine("key", "k", 1.0, None, None, 0.0, "key k")
        grants = await asyncio.gather(*(ledger.reserve(f"r{i}", [line], 0.3, 0.05) for i in range(6)))
        await eng.dispose()
        return [g.amount for g in grants]

    amounts = asyncio.run(run())
    assert sum(amounts) == pytest.approx(1.0)
    assert sorted(amounts, reverse=True)[:4] == pytest.approx([0.3, 0.3, 0.3, 0.1])


def test_budget_period_resets_spend(engine):
    from parley.spend.writer import reset_budgets

    async def run() -> tuple:
        eng = make_engine(engine, {})
        past = time.time() - 90
        async with eng.begin() as conn:
            await conn.execute(
                sa.insert(t.keys).values(
                    token="due",
                    key_name="sk-...d",
                    spend=4.0,
                    max_budget=5.0,
                    budget_duration="1m",
                    budget_reset_at=past,
                    created_at=0,
                    updated_at=0,
                )
            )
        async with eng.begin() as conn:
            assert await reset_budgets(conn, time.time()) == 1
            assert await reset_budgets(conn, time.time()) == 0
        async with eng.connect() as conn:
            out = (await conn.execute(sa.select(t.keys.c.spend, t.keys.c.budget_reset_at))).one()
        await eng.dispose()
        return past, tuple(out)

    past, (spend, reset_at) = asyncio.run(run())
    assert spend == 0.0 and reset_at == pytest.approx(past + 120) and reset_at > time.time()


def test_local_ledger_rolls_period():
    ledger = LocalLedger(None, lambda k: (0.0, 0.0), asyncio.ensure_future)
    line = BudgetLine("key", "k", 1.0, "1h", time.time() - 1, 0.9, "key k")

    async def run() -> float:
        return (await ledger.reserve("r", [line], 0.5, 0.1)).amount

    ledger.entries["key:k"] = _Entry(0.9, line.reset_at)
    assert asyncio.run(run()) == 0.5  # the period ended: the 0.9 spent belongs to the last one
