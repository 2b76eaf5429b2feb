"""What the spend writer costs the event loop: N rows queued and flushed into SQLite, in process,
with a loop-lag probe (a 1 ms sleep in a loop, recording how late each wake-up is) running.

    python bench/spend_flush.py [--rows 5000] [--rounds 3] [--src OTHER_CHECKOUT/src] [--database URL]
                                [--busy]

`--busy` keeps the loop busy during the flush (pure-Python slices of 1 ms with a yield between, as
a saturated gateway's loop is), to show how long the rows then take to reach the database.
`--database` takes an empty database's URL (a Postgres one, say) instead of a new SQLite file; its
tables are created and the rows stay there.

Reports, per round: the event-loop thread's CPU per row while queueing and while flushing (the
writer's work that lands on the loop; the probe's own CPU, measured idle, is taken off), the wall
time until every row is committed, and the probe's worst and p99 lateness during the flush. Builds
before the row tuples (issue 22) take dict rows; both are supported, so `--src` can point at an
older checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from typing import Any


def _rows(n: int, offset: int) -> list[Any]:
    now = time.time()
    rows = [
        {
            "request_id": f"req-{offset + i}",
            "api_key": "tok",
            "key_alias": None,
            "user": "u",
            "team_id": None,
            "end_user": None,
            "session_id": None,
            "request_tags": None,
            "route": "/v1/messages",
            "model": "claude-haiku-4-5",
            "model_id": "dep-1",
            "custom_llm_provider": "anthropic",
            "upstream_model": "claude-haiku-4-5",
            "prompt_tokens": 12,
            "completion_tokens": 30,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
            "total_tokens": 42,
            "spend": 0.0001,
            "estimated": False,
            "status": 200,
            "error_type": None,
            "stream": False,
            "cache_hit": False,
            "latency_ms": 1.5,
            "ttft_ms": None,
            "start_time": now,
            "end_time": now,
            "day": "2026-01-01",
            "retrieval": None,
            "guardrails": None,
            "cc_version": None,
            "cc_entrypoint": None,
        }
        for i in range(n)
    ]
    try:
        from parley.spend.rows import from_mapping
    except ImportError:  # a build from before the row tuples
        return rows
    return [from_mapping(r) for r in rows]


async def _busy(stop: asyncio.Event) -> None:
    while not stop.is_set():
        until = time.perf_counter() + 0.001
        while time.perf_counter() < until:
            pass
        await asyncio.sleep(0)


async def _probe(lags: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        began = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - began - 0.001)


async def _round(writer: Any, n: int, offset: int, wake_cpu: float, busy: bool) -> dict[str, float]:
    """One round; `wake_cpu` is the probe's own CPU per wake-up, taken off the flush's loop CPU."""
    rows = _rows(n, offset)
    began, cpu = time.perf_counter(), time.thread_time()
    for row in rows:
        writer.enqueue(row)
    queued_cpu = time.thread_time() - cpu
    lags: list[float] = []
    stop = asyncio.Event()
    probe = asyncio.get_running_loop().create_task(_busy(stop) if busy else _probe(lags, stop))
    await asyncio.sleep(0)
    cpu = time.thread_time()
    assert await writer.flush()
    flush_cpu = time.thread_time() - cpu
    wall = time.perf_counter() - began
    stop.set()
    await probe
    if busy:  # the loop's CPU and lateness are the busy task's
        return {"committed_after_ms": 1e3 * wall}
    lags.sort()
    return {
        "queue_us_per_row": 1e6 * queued_cpu / n,
        "flush_loop_us_per_row": 1e6 * max(0.0, flush_cpu - wake_cpu * len(lags)) / n,
        "committed_after_ms": 1e3 * wall,
        "lag_max_ms": 1e3 * lags[-1],
        "lag_p99_ms": 1e3 * lags[int(0.99 * (len(lags) - 1))],
    }


async def idle_lag(seconds: float = 1.0) -> dict[str, float]:
    """The probe with nothing else running: this machine's own lateness, to read the rest against,
    and the probe's CPU per wake-up."""
    lags: list[float] = []
    stop = asyncio.Event()
    cpu = time.thread_time()
    probe = asyncio.get_running_loop().create_task(_probe(lags, stop))
    await asyncio.sleep(seconds)
    stop.set()
    await probe
    wake_cpu = (time.thread_time() - cpu) / len(lags)
    lags.sort()
    return {
        "lag_max_ms": 1e3 * lags[-1],
        "lag_p99_ms": 1e3 * lags[int(0.99 * (len(lags) - 1))],
        "wake_cpu": wake_cpu,
    }


async def measure(
    rows: int, rounds: int, url: str | None, busy: bool
) -> tuple[dict[str, float], list[dict[str, float]]]:
    import sqlalchemy as sa

    from parley.spend.writer import SpendWriter
    from parley.store import tables as t
    from parley.store.db import make_engine, migrate

    url = url or os.path.join(tempfile.mkdtemp(prefix="parley-spend-flush-"), "bench.db")
    engine = make_engine(url, {})
    await migrate(engine)
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(t.keys).values(token="tok", key_name="sk-...x", created_at=0, updated_at=0)
        )
    writer = SpendWriter(engine, interval=3600, batch_size=500)
    writer.start()
    idle = await idle_lag()
    out = [await _round(writer, rows, i * rows, idle["wake_cpu"], busy) for i in range(rounds)]
    await writer.stop()
    await engine.dispose()
    return idle, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--src", help="measure parley from another checkout's src/ directory")
    p.add_argument("--database", help="an empty database's URL (default: a new SQLite file)")
    p.add_argument("--busy", action="store_true", help="keep the loop busy during the flush (no probe)")
    args = p.parse_args()
    if args.src:
        sys.path.insert(0, os.path.abspath(args.src))
    import parley

    idle, results = asyncio.run(measure(args.rows, args.rounds, args.database, args.busy))
    where = os.path.dirname(os.path.dirname(parley.__file__))
    print(f"parley from {where}, {args.rows} rows per round, {args.database or 'SQLite'}")
    print(f"  idle loop, no writer: lag max {idle['lag_max_ms']:.2f} ms, p99 {idle['lag_p99_ms']:.2f} ms")
    for name in results[0]:
        values = [r[name] for r in results]
        each = ", ".join(f"{v:.2f}" for v in values)
        print(f"  {name:24} median {statistics.median(values):9.2f}   rounds: {each}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
