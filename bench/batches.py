"""Message Batches benchmark: items per second on the mock backend with one instance (SQLite) and two
(Postgres), and interactive `/v1/messages` latency at concurrency 16 with and without a batch running
on the same deployment (fake upstream). Real processes on loopback.

    PYTHONPATH=src python bench/batches.py [--items 2000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time

import aiohttp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from batches_support import batch_config
from keys_support import MASTER, create_pg_database, drop_pg_database
from parley.testing.procs import FakeUpstream, Gateway

HEADERS = {"x-api-key": MASTER, "content-type": "application/json", "anthropic-version": "2023-06-01"}


def _requests(n: int, model: str) -> list[dict]:
    return [
        {
            "custom_id": f"i{i}",
            "params": {"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": f"q{i}"}]},
        }
        for i in range(n)
    ]


async def _create(http: aiohttp.ClientSession, url: str, n: int, model: str) -> str:
    async with http.post(
        f"{url}/v1/messages/batches", json={"requests": _requests(n, model)}, headers=HEADERS
    ) as r:
        return (await r.json())["id"]


async def _until_ended(http: aiohttp.ClientSession, url: str, batch_id: str) -> None:
    while True:
        async with http.get(f"{url}/v1/messages/batches/{batch_id}", headers=HEADERS) as r:
            if (await r.json())["processing_status"] == "ended":
                return
        await asyncio.sleep(0.05)


async def throughput(urls: list[str], n: int) -> float:
    async with aiohttp.ClientSession() as http:
        start = time.perf_counter()
        batch_id = await _create(http, urls[0], n, "parley-mock")
        await _until_ended(http, urls[-1], batch_id)
        return n / (time.perf_counter() - start)


async def latency(url: str, seconds: float, concurrency: int = 16) -> list[float]:
    body = {"model": "claude-haiku-4-5", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession() as http:

        async def user() -> None:
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                async with http.post(f"{url}/v1/messages", json=body, headers=HEADERS) as r:
                    await r.read()
                    assert r.status == 200, r.status
                times.append(time.perf_counter() - t)

        await asyncio.gather(*(user() for _ in range(concurrency)))
    return times


def _summary(times: list[float]) -> str:
    q = statistics.quantiles(times, n=100)
    return f"p50 {q[49] * 1000:.1f} ms, p95 {q[94] * 1000:.1f} ms, {len(times)} calls"


async def interference(url: str, db: str, seconds: float, items: int) -> tuple[list[float], list[float], int]:
    """Interactive latency alone, then with a batch on the same deployment; and how many batch
    items finished meanwhile."""
    base = await latency(url, seconds)
    async with aiohttp.ClientSession() as http:
        batch_id = await _create(http, url, items, "claude-haiku-4-5")
        busy = await latency(url, seconds)
        with sqlite3.connect(db) as conn:
            query = "SELECT count(*) FROM parley_batch_items WHERE batch_id = ? AND state = 'succeeded'"
            done = conn.execute(query, (batch_id,)).fetchone()[0]
        await _until_ended(http, url, batch_id)
    return base, busy, done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    upstream = FakeUpstream()
    folder = tempfile.mkdtemp(prefix="parley-bench-batches-")
    try:
        gw = Gateway(
            batch_config(
                upstream, os.path.join(folder, "one.db"), max_concurrency=64, deployment_concurrency=64
            )
        )
        try:
            print(f"mock, 1 instance (SQLite): {asyncio.run(throughput([gw.url], args.items)):.0f} items/s")
        finally:
            gw.stop()
        name, pg = create_pg_database()
        gws = [
            Gateway(batch_config(upstream, pg, max_concurrency=64, deployment_concurrency=64))
            for _ in range(2)
        ]
        try:
            rate = asyncio.run(throughput([g.url for g in gws], args.items))
            print(f"mock, 2 instances (Postgres): {rate:.0f} items/s")
        finally:
            for g in gws:
                g.stop()
            drop_pg_database(name)
        db = os.path.join(folder, "lat.db")
        gw = Gateway(batch_config(upstream, db))
        try:
            base, busy, done = asyncio.run(interference(gw.url, db, args.seconds, args.items))
            print(f"interactive c=16 alone:          {_summary(base)}")
            print(f"interactive c=16, batch running: {_summary(busy)} ({done} batch items done meanwhile)")
            print(f"p50 change: {(statistics.median(busy) / statistics.median(base) - 1) * 100:+.1f}%")
        finally:
            gw.stop()
    finally:
        upstream.stop()


if __name__ == "__main__":
    main()
