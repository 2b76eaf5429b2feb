"""The parallel-request limit in Redis: a lease left by a process that died frees its slot once it is
older than the lease, and only then; both through the acquisition alone and the admission call."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from parley.core.context import LimitSpec
from parley.filters.rate_limit_store import ADMIT_PART, LEASE_MS, LocalLimiter, RedisLimiter
from parley.store.lua_batch import Combined
from parley.store.redis_link import RedisLink
from parley.testing.procs import RedisServer, free_port

SPEC = LimitSpec("key", "k-leases", rpm=100, tpm=None, max_parallel=2)


@pytest.fixture(scope="module")
def server():
    s = RedisServer(free_port())
    yield s
    s.stop()


def _lease(server: RedisServer, prefix: str, member: str, age_ms: int) -> None:
    """A lease as a worker makes it, `age_ms` old (a worker that died holding it)."""
    r = redis.Redis.from_url(server.url)
    r.zadd(f"{prefix}:rl:key:k-leases:par", {member: int(time.time() * 1000) - age_ms})


async def _admit(server: RedisServer, prefix: str, rid: str, combined: bool) -> tuple[bool, str]:
    link = RedisLink(server.url, prefix)
    limiter = RedisLimiter(link, LocalLimiter())
    try:
        if combined:
            ask = limiter.ask([SPEC], rid)
            results, _ = await Combined(link, [ADMIT_PART]).call([ask])
            decision, _ = limiter.decide(ask.data, rid, results[0])
        else:
            decision, _ = await limiter.acquire([SPEC], rid)
    finally:
        await link.close()
    return decision.allowed, decision.kind


@pytest.mark.parametrize("combined", [False, True], ids=["alone", "in-admission"])
def test_a_dead_workers_lease_frees_its_slot_after_the_lease(server, combined):
    prefix = f"leases-{combined}"
    _lease(server, prefix, "dead-1", LEASE_MS + 5_000)  # older than the lease
    _lease(server, prefix, "live-1", 1_000)  # a request still running elsewhere
    assert asyncio.run(_admit(server, prefix, "new-1", combined)) == (True, "")
    members = redis.Redis.from_url(server.url).zrange(f"{prefix}:rl:key:k-leases:par", 0, -1)
    assert sorted(members) == [b"live-1", b"new-1"]  # the dead one dropped, the new one holds a slot
    # now two live leases: the limit (2) is reached, whatever the age of neither
    assert asyncio.run(_admit(server, prefix, "new-2", combined)) == (False, "parallel")


@pytest.mark.parametrize("combined", [False, True], ids=["alone", "in-admission"])
def test_leases_younger_than_the_lease_keep_their_slots(server, combined):
    prefix = f"young-{combined}"
    _lease(server, prefix, "a", LEASE_MS - 60_000)
    _lease(server, prefix, "b", 10)
    assert asyncio.run(_admit(server, prefix, "c", combined)) == (False, "parallel")
