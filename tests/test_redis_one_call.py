"""Issue 22: with Redis, a request is admitted in one round trip. Real `parley serve` processes and a
private redis-server whose MONITOR feed shows every command the gateways send (the commands a Lua
script runs inside Redis are not round trips and are left out)."""

from __future__ import annotations

import asyncio
import threading
import time

import anthropic
import pytest
import redis

from keys_support import MASTER, Admin
from parley.testing.procs import RedisServer, anthropic_deployment, free_port
from parley.testing.redis_monitor import Command, RedisMonitor

MODEL = "claude-sonnet-4-5"
PREFIX = "one"
MAX_TOKENS = 200
COST_PER_CALL = 8 * 3e-6 + MAX_TOKENS * 15e-6  # 8 input tokens at $3/M, 200 output at $15/M
LONG = {"content": [{"type": "text", "text": "word " * 400}]}  # cut at max_tokens: costs its bound


@pytest.fixture(scope="module")
def own_redis():
    server = RedisServer(free_port())
    yield server
    server.stop()


def config(upstream, db: str, redis_url: str) -> dict:
    deployment = anthropic_deployment(MODEL, upstream, "claude-sonnet-4-5-20250929")
    return {
        "model_list": [deployment, deployment],  # two deployments: the router reads their cooldowns
        "general_settings": {"master_key": MASTER, "database_url": db, "spend_flush_interval": 0.1},
        "router_settings": {
            "redis_url": redis_url,
            "redis_key_prefix": PREFIX,
            "cooldown_sync_interval": 3600,  # read once, then only along with other parts
            "redis_lease_ms": 0,  # every request asks Redis (leases: tests/test_quota_leases.py)
        },
    }


@pytest.fixture(scope="module")
def gateway(start_gateway, fake_upstream, own_redis, tmp_path_factory):
    db = str(tmp_path_factory.mktemp("one-call") / "parley.db")
    return start_gateway(config(fake_upstream, db, own_redis.url))


def ask(url: str, key: str, max_tokens: int = 16) -> int:
    client = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, timeout=30)
    try:
        client.messages.create(
            model=MODEL, max_tokens=max_tokens, messages=[{"role": "user", "content": "go"}]
        )
    except anthropic.APIStatusError as e:
        return e.status_code
    return 200


def parts(cmd: Command) -> set[str]:
    """What a script call touches: `rl`, `budget`, `cooldown` (from the keys it names)."""
    n = int(cmd.args[2])
    return {k.split(":")[1] for k in cmd.args[3 : 3 + n]}


def per_request(seen: list[Command]) -> list[Command]:
    """Leave out the heartbeat loop's own calls: its SET (sent only when no reservation refreshed
    it lately) and, every second, the count of the processes sharing the budgets (`:peers`)."""
    return [c for c in seen if not (c.name == "SET" and ":alive:" in c.args[1]) and not _peers(c)]


def _peers(cmd: Command) -> bool:
    return cmd.name == "EVALSHA" and cmd.args[2:4] == ("1", f"{PREFIX}:peers")


def during_one_request(gw, upstream, own_redis, key: str) -> tuple[list[Command], list[Command]]:
    """The commands sent before the upstream had the request, and all of them once it was over."""
    time.sleep(0.2)  # what earlier requests left to settle is sent (within 5 ms)
    before = len(upstream.requests())
    upstream.script({"content": [{"type": "text", "text": "ok"}], "delay": 1.0})
    status: list[int] = []
    with RedisMonitor(own_redis.port) as monitor:
        thread = threading.Thread(target=lambda: status.append(ask(gw.url, key)))
        thread.start()
        deadline = time.monotonic() + 10
        while len(upstream.requests()) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        admitted = per_request(
            monitor.commands(settle=0.2)
        )  # (the feed's last lines read; the reply is 1 s away)
        thread.join(30)
        everything = per_request(monitor.commands(settle=0.5))
    assert status == [200]
    return admitted, everything


def test_limits_budget_and_router_are_asked_in_one_call(gateway, upstream, own_redis):
    key = Admin(gateway.url).post(
        "/key/generate",
        {"max_budget": 10.0, "rpm_limit": 1000, "tpm_limit": 10**7, "max_parallel_requests": 50},
    )["key"]
    assert ask(gateway.url, key) == 200  # scripts loaded, the budget seeded from the database
    admitted, everything = during_one_request(gateway, upstream, own_redis, key)
    assert [c.name for c in admitted] == ["EVALSHA"]  # one round trip before the upstream call
    assert parts(admitted[0]) == {"rl", "budget", "cooldown"}
    settle = everything[1:]  # after the reply: the hold settled and the tokens counted, together
    assert [c.name for c in settle] == ["EVALSHA"]
    assert parts(settle[0]) == {"rl", "budget"}


def test_a_part_not_configured_costs_nothing(gateway, upstream, own_redis):
    admin = Admin(gateway.url)
    budget_only = admin.post("/key/generate", {"max_budget": 10.0})["key"]
    assert ask(gateway.url, budget_only) == 200
    admitted, everything = during_one_request(gateway, upstream, own_redis, budget_only)
    assert [parts(c) for c in admitted] == [{"budget", "cooldown"}]  # no rate-limit part
    assert [parts(c) for c in everything[1:]] == [{"budget"}]

    plain = admin.post("/key/generate", {})["key"]  # no limits, no budget; cooldowns read lately
    assert ask(gateway.url, plain) == 200
    admitted, everything = during_one_request(gateway, upstream, own_redis, plain)
    assert admitted == [] and everything == []


def test_a_rate_limit_refusal_holds_no_money(gateway, own_redis):
    key = Admin(gateway.url).post("/key/generate", {"max_budget": 10.0, "rpm_limit": 1})["key"]
    assert ask(gateway.url, key) == 200
    time.sleep(0.3)  # its settlement is sent
    with RedisMonitor(own_redis.port) as monitor:
        assert ask(gateway.url, key) == 429
        seen = per_request(monitor.commands(settle=0.5))
    # the admission call, and nothing to settle: the reservation after the refusal never ran
    assert [c.name for c in seen] == ["EVALSHA"]
    assert parts(seen[0]) == {"rl", "budget", "cooldown"}
    r = redis.Redis(port=own_redis.port)
    holds = [
        float(r.hget(b, "reserved") or 0)
        for b in r.scan_iter(f"{PREFIX}:budget:key:*")
        if r.type(b) == b"hash"
    ]
    assert holds and max(holds) == pytest.approx(0.0, abs=1e-12)


async def _race(urls: list[str], key: str, n: int) -> list[int]:
    clients = [anthropic.AsyncAnthropic(base_url=u, api_key=key, max_retries=0, timeout=60) for u in urls]

    async def one(i: int) -> int:
        try:
            await clients[i % len(clients)].messages.create(
                model=MODEL, max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": "go"}]
            )
        except anthropic.APIStatusError as e:
            return e.status_code
        return 200

    try:
        return await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        for c in clients:
            await c.close()


def test_two_instances_share_limits_and_never_overspend(start_gateway, upstream, own_redis, tmp_path):
    cfg = config(upstream, str(tmp_path / "parley.db"), own_redis.url)
    cfg["router_settings"]["redis_key_prefix"] = "race"
    one, two = start_gateway(cfg), start_gateway(cfg)
    admin = Admin(one.url)
    budget = 8 * COST_PER_CALL
    key = admin.post("/key/generate", {"max_budget": budget, "rpm_limit": 24})["key"]
    upstream.script(*[{**LONG, "delay": 0.3}] * 40)
    statuses = asyncio.run(_race([one.url, two.url], key, 40))
    assert statuses.count(429) == 16  # the rpm window is shared: 24 admitted of 40, across both
    assert set(statuses) <= {200, 402, 429}
    assert 1 <= statuses.count(200) <= 8 + 1  # (the ninth may be capped to what is left)
    rows = admin.wait_logs(40, api_key=key)
    spent = sum(r["spend"] for r in rows)
    assert spent <= budget + 1e-12  # never more than the budget, whichever instance served
    assert spent > 0.8 * budget
