"""Quota leases (issue 22, Redis at 85%): far from its limits, a key's requests are served from
blocks of rpm/parallel slots and budget money taken from Redis with one request's own ask; once
the leases end, Redis holds exactly what was served, and a limit or a budget is never exceeded.
Real `parley serve` processes and a private redis-server."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from keys_support import Admin, call, redis_config
from parley.testing.procs import RedisServer, free_port
from parley.testing.redis_monitor import RedisMonitor

MAX_TOKENS = 200
COST_PER_CALL = 8 * 3e-6 + MAX_TOKENS * 15e-6  # 8 input tokens at $3/M, 200 output at $15/M
FULL = {"content": [{"type": "text", "text": "word " * 400}]}  # cut at max_tokens: costs its bound
FAR = {"rpm_limit": 10**6, "tpm_limit": 10**9, "max_parallel_requests": 1000}


@pytest.fixture
def own_redis():
    server = RedisServer(free_port())
    yield server
    server.stop()


def config(upstream, db: str, redis_url: str, lease_ms: int) -> dict:
    return redis_config(upstream, db, redis_url, "q", redis_lease_ms=lease_ms)


def one_key(r: redis.Redis, pattern: str) -> bytes:
    names = list(r.scan_iter(pattern))
    assert len(names) == 1, names
    return names[0]


def budget_hash(r: redis.Redis) -> bytes:
    """The key's budget (a hash with its period, spent and reserved)."""
    names = [n for n in r.scan_iter("q:budget:key:*") if r.type(n) == b"hash" and r.hexists(n, "spent")]
    assert len(names) == 1, names
    return names[0]


def what_redis_holds(r: redis.Redis) -> dict:
    """The key's rate-limit and budget state in Redis."""
    budget = budget_hash(r)
    tokens = r.hgetall(one_key(r, "q:rl:key:*:tok"))
    return {
        "requests": r.zcard(one_key(r, "q:rl:key:*:req")),
        "parallel": r.zcard(one_key(r, "q:rl:key:*:par")) if list(r.scan_iter("q:rl:key:*:par")) else 0,
        "tokens": sum(int(v) for v in tokens.values()),
        "reserved": float(r.hget(budget, "reserved") or 0),
        "spent": float(r.hget(budget, "spent") or 0),
    }


def script_calls(monitor: RedisMonitor) -> int:
    """EVALSHA calls but the heartbeat loop's count of the processes (`:peers`)."""
    return sum(1 for c in monitor.commands(settle=0.3) if c.name == "EVALSHA" and "q:peers" not in c.args)


def test_far_from_limits_leases_serve_and_redis_ends_exact(start_gateway, upstream, tmp_path, own_redis):
    gw = start_gateway(config(upstream, str(tmp_path / "p.db"), own_redis.url, lease_ms=3000))
    admin = Admin(gw.url)
    key = admin.post("/key/generate", {"max_budget": 100.0, **FAR})["key"]
    upstream.script(*[FULL] * 60)
    with RedisMonitor(own_redis.port) as monitor:
        statuses = [call(gw.url, key) for _ in range(60)]
        calls = script_calls(monitor)
    assert statuses == [200] * 60
    # leases of 4, 8, 16, 32 requests: a handful of admission calls (and their settlements),
    # where every request used to make one, and one more for its settlement
    assert calls <= 15, calls
    rows = admin.wait_logs(60, api_key=key)
    time.sleep(3.5)  # the leases end (3 s): what they did not hand out goes back, their spend in
    held = what_redis_holds(redis.Redis(port=own_redis.port))
    assert held["requests"] == 60  # each request counted once; no leased slot left over
    assert held["parallel"] == 0
    assert held["tokens"] == sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)
    assert held["reserved"] == pytest.approx(0.0, abs=1e-12)
    assert held["spent"] == pytest.approx(sum(r["spend"] for r in rows), rel=1e-9)


def test_a_stopping_gateway_gives_its_leases_back(start_gateway, upstream, tmp_path, own_redis):
    gw = start_gateway(config(upstream, str(tmp_path / "p.db"), own_redis.url, lease_ms=600_000))
    admin = Admin(gw.url)
    key = admin.post("/key/generate", {"max_budget": 100.0, **FAR})["key"]
    upstream.script(*[FULL] * 6)
    assert [call(gw.url, key) for _ in range(6)] == [200] * 6
    r = redis.Redis(port=own_redis.port)
    assert what_redis_holds(r)["reserved"] > 4 * COST_PER_CALL  # a lease is held (10 minutes)
    spent = sum(row["spend"] for row in admin.wait_logs(6, api_key=key))
    gw.stop()
    held = what_redis_holds(r)
    assert held["requests"] == 6 and held["parallel"] == 0
    assert held["reserved"] == pytest.approx(0.0, abs=1e-12)
    assert held["spent"] == pytest.approx(spent, rel=1e-9)


def race(url: str, key: str, n: int) -> list[int]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: call(url, key), range(n)))


def test_two_workers_keep_an_rpm_limit_exact(start_gateway, upstream, tmp_path, own_redis):
    gw = start_gateway(config(upstream, str(tmp_path / "p.db"), own_redis.url, lease_ms=5000), workers=2)
    key = Admin(gw.url).post("/key/generate", {"rpm_limit": 60, "max_parallel_requests": 100})["key"]
    upstream.script(*[{"content": [{"type": "text", "text": "ok"}]}] * 100)
    statuses = race(gw.url, key, 100)
    # leases far from the limit (an eighth of what is left at most), every request near it in Redis
    assert statuses.count(200) == 60 and statuses.count(429) == 40


def test_two_workers_on_leases_never_overspend(start_gateway, upstream, tmp_path, own_redis):
    gw = start_gateway(config(upstream, str(tmp_path / "p.db"), own_redis.url, lease_ms=500), workers=2)
    admin = Admin(gw.url)
    budget = 60 * COST_PER_CALL
    key = admin.post("/key/generate", {"max_budget": budget})["key"]
    upstream.script(*[FULL] * 100)
    statuses = race(gw.url, key, 100)
    assert set(statuses) <= {200, 402} and statuses.count(200) >= 45
    rows = admin.wait_logs(statuses.count(200), api_key=key)
    spent = sum(r["spend"] for r in rows)
    assert spent <= budget + 1e-12
    time.sleep(1.0)  # every lease has ended
    held = what_redis_holds_budget(redis.Redis(port=own_redis.port))
    assert held["reserved"] == pytest.approx(0.0, abs=1e-12)
    assert held["spent"] == pytest.approx(spent, rel=1e-9)


def what_redis_holds_budget(r: redis.Redis) -> dict:
    budget = budget_hash(r)
    return {"reserved": float(r.hget(budget, "reserved") or 0), "spent": float(r.hget(budget, "spent") or 0)}


def test_a_killed_gateways_lease_is_freed(start_gateway, upstream, tmp_path, own_redis):
    db = str(tmp_path / "p.db")
    a = start_gateway(config(upstream, db, own_redis.url, lease_ms=600_000))
    key = Admin(a.url).post("/key/generate", {"max_budget": 50 * COST_PER_CALL})["key"]
    upstream.script(*[FULL] * 80)
    assert call(a.url, key) == 200
    r = redis.Redis(port=own_redis.port)
    time.sleep(0.3)  # its own hold settled
    leased = what_redis_holds_budget(r)["reserved"]
    assert leased >= 4 * COST_PER_CALL  # a lease of four requests' bounds
    os.killpg(a.proc.pid, signal.SIGKILL)
    a.proc.wait()
    b = start_gateway(config(upstream, db, own_redis.url, lease_ms=500))
    time.sleep(6)  # the killed gateway's heartbeat (5 s) lapses
    statuses = [call(b.url, key) for _ in range(60)]
    spent = sum(row["spend"] for row in Admin(b.url).wait_logs(1 + statuses.count(200), api_key=key))
    assert spent <= 50 * COST_PER_CALL + 1e-12
    # the killed gateway's lease went back: b spent all but about a request of what was left
    assert spent > 50 * COST_PER_CALL - 2 * COST_PER_CALL, (spent, statuses)


def test_redis_dying_under_leased_requests_never_overspends(start_gateway, upstream, tmp_path, own_redis):
    """Requests in flight on a lease when Redis dies are held in process too: the budget the
    gateway then keeps in process (what the database says is left) does not count them twice."""
    gw = start_gateway(config(upstream, str(tmp_path / "p.db"), own_redis.url, lease_ms=10_000))
    admin = Admin(gw.url)
    budget = 40 * COST_PER_CALL
    key = admin.post("/key/generate", {"max_budget": budget})["key"]
    slow = {**FULL, "delay": 2.0}
    upstream.script(FULL, *[slow] * 4, *[{**FULL, "delay": 0.1}] * 60)
    assert call(gw.url, key) == 200  # a lease of four requests' bounds, with its own hold
    with ThreadPoolExecutor(4) as pool:
        in_flight = [pool.submit(call, gw.url, key) for _ in range(4)]  # all four on the lease
        time.sleep(0.5)
        assert len(upstream.requests()) == 5  # (the four reached the upstream without Redis)
        own_redis.stop()
        statuses = race(gw.url, key, 60)  # the lease is full: in process, from the database's spend
        statuses += [f.result() for f in in_flight]
    assert set(statuses) <= {200, 402}, statuses
    rows = admin.wait_logs(1 + statuses.count(200), api_key=key)
    spent = sum(r["spend"] for r in rows)
    assert spent <= budget + 1e-12, (spent / COST_PER_CALL, statuses)
    assert spent > budget - 6 * COST_PER_CALL  # (what was left was used, not refused)


async def _acquire_many(url: str, specs: list, n: int, tokens: int = 0) -> tuple[int, int]:
    """`n` requests through the limiter as the admission filter makes them (claim a lease, else ask
    Redis); (how many asked Redis, how many were admitted)."""
    from parley.filters.rate_limit_store import ADMIT_PART, LocalLimiter, RedisLimiter
    from parley.store.lua_batch import Combined
    from parley.store.redis_link import RedisLink

    link = RedisLink(url, "u", lease_ms=5000, lease_max_requests=64)
    limiter = RedisLimiter(link, LocalLimiter())
    later = link.later
    admission = Combined(link, [later.part(), ADMIT_PART])  # (the settlements queued ride along)
    asked = admitted = 0
    try:
        for i in range(n):
            leases = limiter.claim(specs)
            if leases is not None:
                decision = limiter.leased(specs, leases, f"r{i}")
                shared: bool | list = leases
            else:
                asked += 1
                ask = limiter.ask(specs, f"r{i}")
                results, _ = await admission.call([later.take(later.kinds), ask])
                decision, shared = limiter.decide(ask.data, f"r{i}", results[1])
            if decision.allowed:
                admitted += 1
                limiter.settle(specs, f"r{i}", tokens, shared)
    finally:
        await link.close()
    return asked, admitted


def test_tokens_past_half_the_tpm_limit_ask_redis_every_time(own_redis):
    import asyncio

    from parley.core.context import LimitSpec

    far = LimitSpec("key", "tpm-far", rpm=10**6, tpm=10**6)
    asked, admitted = asyncio.run(_acquire_many(own_redis.url, [far], 100, tokens=10))
    assert admitted == 100 and asked <= 10  # leased: a few calls for 100 requests
    near = LimitSpec("key", "tpm-near", rpm=10**6, tpm=2000)
    asked, admitted = asyncio.run(_acquire_many(own_redis.url, [near], 300, tokens=10))
    # past 1,000 tokens (half the limit) no lease is granted: each request asks Redis, which
    # refuses once the window holds 2,000 (the leases' tokens counted before each new grant)
    assert admitted == 200 and asked >= 195, (asked, admitted)


def test_a_changed_limit_is_not_served_from_the_old_lease(own_redis):
    import asyncio

    from parley.core.context import LimitSpec
    from parley.filters.rate_limit_store import ADMIT_PART, LocalLimiter, RedisLimiter
    from parley.store.lua_batch import Combined
    from parley.store.redis_link import RedisLink

    async def run() -> tuple[bool, bool]:
        link = RedisLink(own_redis.url, "c", lease_ms=60_000)
        limiter = RedisLimiter(link, LocalLimiter())
        old = LimitSpec("key", "edited", rpm=10**6)
        try:
            ask = limiter.ask([old], "r0")
            results, _ = await Combined(link, [ADMIT_PART]).call([ask])
            assert limiter.decide(ask.data, "r0", results[0])[0].allowed
            new = LimitSpec("key", "edited", rpm=5)  # the key's limit lowered by an admin
            return limiter.claim([old]) is not None, limiter.claim([new]) is not None
        finally:
            await link.close()

    assert asyncio.run(run()) == (True, False)
