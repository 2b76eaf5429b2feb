"""Issue 13: no 500s and no budget overshoot when Redis fails. Real `parley serve` processes with a
private redis-server that each test stops, pauses, restarts; the gateway's database outlives it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anthropic
import pytest
import redis

from keys_support import Admin, call, redis_config
from parley.testing.procs import RedisServer, free_port

MAX_TOKENS = 200
COST_PER_CALL = 8 * 3e-6 + MAX_TOKENS * 15e-6  # 8 input tokens at $3/M, 200 output at $15/M
FULL = {"content": [{"type": "text", "text": "word " * 400}]}  # cut at max_tokens: costs its bound


@pytest.fixture
def own_redis():
    server = RedisServer(free_port())
    yield server
    server.stop()


def config(upstream, tmp_path, redis_url: str, **router) -> dict:
    return redis_config(upstream, str(tmp_path / "parley.db"), redis_url, **router)


def timed(url: str, key: str) -> tuple[int, float]:
    start = time.monotonic()
    status = call(url, key)
    return status, time.monotonic() - start


def test_redis_down_budgets_kept_in_process(start_gateway, upstream, tmp_path, own_redis):
    gw = start_gateway(config(upstream, tmp_path, own_redis.url))
    admin = Admin(gw.url)
    key = admin.post("/key/generate", {"max_budget": 3 * COST_PER_CALL})["key"]
    upstream.script(*[FULL] * 6)
    assert call(gw.url, key) == 200
    own_redis.stop()
    results = [timed(gw.url, key) for _ in range(4)]
    assert [s for s, _ in results] == [200, 200, 402, 402]  # budget kept in process, no 500
    assert max(t for _, t in results) < 2.0  # bounded by the 0.5 s link timeout
    spent = sum(r["spend"] for r in admin.wait_logs(3, api_key=key))
    assert spent <= 3 * COST_PER_CALL + 1e-12
    assert gw.log().count("falling back to IN-PROCESS") == 1


def test_paused_redis_costs_at_most_the_link_timeout(start_gateway, upstream, tmp_path, own_redis):
    gw = start_gateway(config(upstream, tmp_path, own_redis.url))
    key = Admin(gw.url).post("/key/generate", {"max_budget": 1.0})["key"]
    upstream.script(*[FULL] * 8)
    assert call(gw.url, key) == 200
    own_redis.pause()
    try:
        results = [timed(gw.url, key) for _ in range(6)]
    finally:
        own_redis.resume()
    assert [s for s, _ in results] == [200] * 6
    assert max(t for _, t in results) < 2.0
    time.sleep(2.2)  # the link retries after retry_interval
    assert call(gw.url, key) == 200
    assert "reachable again" in gw.log()


async def _burst(url: str, key: str, n: int) -> list[int]:
    client = anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0, timeout=60)

    async def one() -> int:
        try:
            await client.messages.create(
                model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "x"}]
            )
        except anthropic.APIStatusError as e:
            return e.status_code
        return 200

    try:
        return await asyncio.gather(*(one() for _ in range(n)))
    finally:
        await client.close()


@pytest.mark.parametrize("pool", [None, 4])
def test_more_requests_in_flight_than_redis_connections(start_gateway, upstream, tmp_path, own_redis, pool):
    router = {"redis_max_connections": pool} if pool else {}
    gw = start_gateway(config(upstream, tmp_path, own_redis.url, **router))
    key = Admin(gw.url).post("/key/generate", {"max_budget": 100.0})["key"]
    upstream.script(*[{"content": [{"type": "text", "text": "ok"}], "delay": 0.3}] * 200)
    statuses = asyncio.run(_burst(gw.url, key, 200))
    assert statuses == [200] * 200


def test_gateway_starts_and_serves_while_redis_is_unreachable(start_gateway, upstream, tmp_path):
    port = free_port()
    gw = start_gateway(config(upstream, tmp_path, f"redis://127.0.0.1:{port}/0"))
    key = Admin(gw.url).post("/key/generate", {"max_budget": 1.0})["key"]
    upstream.script(*[FULL] * 2)
    assert call(gw.url, key) == 200
    time.sleep(1.5)
    assert gw.log().count("invalidation listener lost Redis") == 1  # once per state change
    server = RedisServer(port)
    try:
        deadline = time.monotonic() + 8
        while "listener subscribed" not in gw.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "listener subscribed" in gw.log()
        time.sleep(2.2)
        assert call(gw.url, key) == 200
    finally:
        server.stop()


def test_killed_gateway_frees_its_budget_holds_within_seconds(start_gateway, upstream, tmp_path, own_redis):
    cfg = config(upstream, tmp_path, own_redis.url)
    doomed, survivor = start_gateway(cfg), start_gateway(cfg)
    key = Admin(survivor.url).post("/key/generate", {"max_budget": COST_PER_CALL})["key"]
    upstream.script({**FULL, "delay": 60}, *[FULL] * 4)
    hung = threading.Thread(target=_hang, args=(doomed.url, key), daemon=True)
    hung.start()
    deadline = time.monotonic() + 5
    while not upstream.requests() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert call(survivor.url, key) == 402  # the doomed gateway's request holds the whole budget
    os.killpg(doomed.proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    statuses = []
    while time.monotonic() - killed < 10:
        statuses.append(call(survivor.url, key))
        if statuses[-1] == 200:
            break
        time.sleep(0.25)
    assert statuses[-1] == 200 and set(statuses) <= {200, 402}
    assert time.monotonic() - killed < 7  # heartbeat TTL (5 s) + a retry, not the 900 s hold TTL


def _hang(url: str, key: str) -> None:
    """A request to a gateway that gets killed while it waits."""
    with contextlib.suppress(anthropic.APIConnectionError):
        call(url, key, timeout=5)


def test_redis_restart_does_not_reset_spend(start_gateway, upstream, tmp_path, own_redis):
    gw = start_gateway(config(upstream, tmp_path, own_redis.url))
    admin = Admin(gw.url)
    key = admin.post("/key/generate", {"max_budget": 2 * COST_PER_CALL})["key"]
    upstream.script(*[FULL] * 4)
    assert [call(gw.url, key) for _ in range(3)] == [200, 200, 402]
    admin.wait_logs(2, api_key=key)
    time.sleep(0.3)  # the spend writer has committed both calls
    own_redis.stop()
    restarted = RedisServer(own_redis.port)  # empty, on the same port
    try:
        time.sleep(2.2)  # the link retries after retry_interval
        assert call(gw.url, key) == 402  # seeded from the database's spend, not the cached record
    finally:
        restarted.stop()
    spent = sum(r["spend"] for r in admin.wait_logs(2, api_key=key))
    assert spent <= 2 * COST_PER_CALL + 1e-12


def test_spend_during_a_pause_reaches_redis_afterwards(start_gateway, upstream, tmp_path, own_redis):
    gw = start_gateway(config(upstream, tmp_path, own_redis.url))
    key = Admin(gw.url).post("/key/generate", {"max_budget": 3 * COST_PER_CALL})["key"]
    upstream.script(*[FULL] * 4)
    assert call(gw.url, key) == 200
    own_redis.pause()
    try:
        assert [call(gw.url, key) for _ in range(2)] == [200, 200]  # on the local ledger
    finally:
        own_redis.resume()
    time.sleep(3.5)  # the link retries; the heartbeat adds the outage's spend to Redis
    assert call(gw.url, key) == 402  # Redis knows all three calls, not just the first


async def _race(url: str, key: str, n: int) -> list[tuple[str, int]]:
    """n concurrent calls: ("ok", MAX_TOKENS), ("capped", the max_tokens granted) or ("402", 0)."""
    client = anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0, timeout=60)

    async def one() -> tuple[str, int]:
        try:
            raw = await client.messages.with_raw_response.create(
                model="claude-sonnet-4-5", max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": "go"}]
            )
        except anthropic.PaymentRequiredError:
            return "402", 0
        capped = raw.headers.get("x-parley-max-tokens-capped")
        return ("capped", int(capped)) if capped else ("ok", MAX_TOKENS)

    try:
        return await asyncio.gather(*(one() for _ in range(n)))
    finally:
        await client.close()


def test_a_redis_outage_splits_what_is_left_between_the_processes(
    start_gateway, upstream, tmp_path, own_redis
):
    """Two workers, then Redis stops with two calls in flight: each worker may hold and spend half
    of what the budget had left, its calls already in flight included, so together they stay
    within it (before, each on its own admitted up to all of it: 16 whole calls for 8 left)."""
    gw = start_gateway(config(upstream, tmp_path, own_redis.url), workers=2)
    admin = Admin(gw.url)
    key = admin.post("/key/generate", {"max_budget": 10 * COST_PER_CALL})["key"]
    upstream.script(*[FULL] * 2, *[{**FULL, "delay": 4}] * 2, *[{**FULL, "delay": 0.5}] * 40)
    assert [call(gw.url, key) for _ in range(2)] == [200, 200]
    admin.wait_logs(2, api_key=key)
    peers = redis.Redis(port=own_redis.port)
    deadline = time.monotonic() + 10
    while peers.zcard("t:peers") < 2 and time.monotonic() < deadline:  # both workers have counted
        time.sleep(0.1)
    time.sleep(1.2)  # (and each has read the count back)
    with ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(call, gw.url, key) for _ in range(2)]  # held in Redis when it stops
        while len(upstream.requests()) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        own_redis.stop()
        results = asyncio.run(_race(gw.url, key, 40))
        assert [f.result() for f in slow] == [200, 200]
    kinds = [kind for kind, _ in results]
    assert set(kinds) <= {"ok", "capped", "402"} and "402" in kinds and "ok" in kinds
    # what was admitted, each call at its worst (cut at the max_tokens granted), fits what was left
    worst = 2 * COST_PER_CALL + sum(8 * 3e-6 + tokens * 15e-6 for kind, tokens in results if kind != "402")
    assert worst <= 8 * COST_PER_CALL + 1e-12, results
    spent = sum(r["spend"] for r in admin.wait_logs(4 + 40 - kinds.count("402"), api_key=key))
    assert spent <= 10 * COST_PER_CALL + 1e-12
