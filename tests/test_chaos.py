"""Issue 13: fault injection. Two `parley serve` gateways share a private Postgres and a private Redis;
bounded load from a few threads through the anthropic SDK (keys with a budget, an rpm limit, neither,
and one far from large limits, served from quota leases)
while Redis, Postgres and one gateway are killed (-9), paused (SIGSTOP) and restarted. Afterwards:
no 500s, one spend row per success (minus the journal window of a killed gateway), budgets and rate
limits within their documented worst cases, and every fault recovered from without a restart.

The default suite runs the short version (one cycle of faults); `make chaos` (PARLEY_CHAOS=long)
runs four cycles with ten times the requests."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from dataclasses import dataclass

import asyncpg
import pytest

from keys_support import MASTER, Admin
from parley.testing.chaos import Fault, Load, admitted_in_window, lost, recovery, run_faults, summary
from parley.testing.chaos import unexpected as unexplained
from parley.testing.postgres import PgServer, postgres_available
from parley.testing.procs import Gateway, RedisServer, anthropic_deployment, free_port

pytestmark = pytest.mark.chaos

BODY = {"model": "claude-sonnet-4-5", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}
BUDGET = 0.02  # about 100 requests of BODY ($0.000189 each): spent while the faults run
RPM = 20
INSTANCES = 2
JOURNAL_WINDOW = 0.25  # s: a killed gateway may lose rows of requests that ended this long before


@dataclass(frozen=True)
class Plan:
    threads: int
    requests: int
    duration: float
    cycles: int
    gap: float  # s between faults


SHORT = Plan(threads=6, requests=600, duration=20.0, cycles=1, gap=1.5)
LONG = Plan(threads=8, requests=6000, duration=180.0, cycles=4, gap=3.0)


@pytest.fixture
def plan() -> Plan:
    return LONG if os.environ.get("PARLEY_CHAOS") == "long" else SHORT


@pytest.fixture
def postgres():
    if not postgres_available():
        pytest.skip("no PostgreSQL 15 binaries")
    server = PgServer()
    server.start()
    yield server
    server.remove()


class Stack:
    """The private Redis, and the two gateways (gateway 1 is the one killed and restarted)."""

    def __init__(self, upstream, postgres: PgServer, journal: str) -> None:
        self.postgres = postgres
        self.redis = RedisServer(free_port())
        self.config = {
            "model_list": [anthropic_deployment("claude-sonnet-4-5", upstream, "claude-sonnet-4-5-20250929")],
            "general_settings": {
                "master_key": MASTER,
                "database_url": postgres.url,
                "spend_flush_interval": 0.1,
                "spend_journal_dir": journal,
                "database_pool_timeout": 2,
            },
            "router_settings": {"redis_url": self.redis.url, "redis_key_prefix": "chaos"},
        }
        self.gateways = [Gateway(self.config) for _ in range(INSTANCES)]

    def restart_redis(self) -> None:
        self.redis = RedisServer(self.redis.port)  # empty: budgets are reseeded from the database

    def restart_postgres(self) -> None:
        self.postgres.start()

    def kill_gateway(self) -> None:
        self.gateways[1].kill()

    def restart_gateway(self) -> None:
        self.gateways[1] = Gateway(self.config, port=self.gateways[1].port)

    def faults(self) -> list[Fault]:
        return [
            Fault("redis kill -9, restarted empty", self.redis_kill, self.restart_redis, 1.5),
            Fault("redis SIGSTOP / SIGCONT", lambda: self.redis.pause(), lambda: self.redis.resume(), 1.5),
            Fault("postgres SIGSTOP / SIGCONT", self.postgres.pause, self.postgres.resume, 1.5),
            Fault("postgres kill -9, restarted", self.postgres.kill, self.restart_postgres, 1.0),
            Fault("gateway kill -9, restarted", self.kill_gateway, self.restart_gateway, 0.2, gateway=1),
        ]

    def redis_kill(self) -> None:
        self.redis.kill()

    def stop(self) -> None:
        for gw in self.gateways:
            gw.stop()
        self.redis.stop()


async def _stored(url: str) -> dict[str, tuple[str, float]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT request_id, api_key, spend FROM parley_spend_logs")
    finally:
        await conn.close()
    return {r["request_id"]: (r["api_key"], r["spend"]) for r in rows}


def stored_rows(url: str, wait_for: set[str], timeout: float = 20.0) -> dict[str, tuple[str, float]]:
    """The spend rows in the database, once `wait_for` are all there (or `timeout` passed)."""
    deadline = time.monotonic() + timeout
    rows = asyncio.run(_stored(url))
    while not wait_for <= rows.keys() and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = asyncio.run(_stored(url))
    return rows


def make_keys(admin: Admin) -> dict[str, str]:
    specs = {
        "budget": {"max_budget": BUDGET},
        "rpm": {"rpm_limit": RPM, "max_budget": 100.0},
        "free": {},
        # far from every limit: served from quota leases (docs/reliability.md) through the faults
        "far": {"max_budget": 100.0, "rpm_limit": 10**6, "tpm_limit": 10**9, "max_parallel_requests": 1000},
    }
    return {name: admin.post("/key/generate", spec)["key"] for name, spec in specs.items()}


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def test_chaos(fake_upstream, upstream, postgres, tmp_path, plan):
    stack = Stack(fake_upstream, postgres, str(tmp_path / "journal"))
    try:
        keys = make_keys(Admin(stack.gateways[0].url))
        faults = [f for _ in range(plan.cycles) for f in stack.faults()]
        load = Load([gw.url for gw in stack.gateways], keys, BODY, plan.threads, plan.requests, plan.duration)
        load.start()
        run_faults(faults, plan.gap)
        outcomes = load.join()
        successes = {o.request_id for o in outcomes if o.status == 200 and o.request_id}
        rows = stored_rows(postgres.url, successes)
    finally:
        stack.stop()
    print("statuses:", summary(outcomes))
    assert not unexplained(outcomes, faults), unexplained(outcomes, faults)[:5]
    check_spend_rows(outcomes, faults, rows)
    check_budget(keys, rows)
    check_rate_limit(outcomes, faults)
    for fault in faults:
        seconds = recovery(outcomes, fault)
        print(f"{fault.name}: recovered in {seconds}s")
        assert seconds is not None and seconds < 5.0, fault.name


def check_spend_rows(outcomes, faults, rows) -> None:
    """One row per success (request ids are the table's key: never two); a killed gateway may lose
    only requests that ended within the journal window before its kill."""
    missing = lost(outcomes, set(rows))
    kills = [f for f in faults if f.gateway is not None]
    for o in missing:
        before = [f.start - o.end for f in kills if f.gateway == o.gateway and f.start >= o.end - 0.05]
        assert before and min(before) <= JOURNAL_WINDOW, (o, before)
    print(f"spend rows: {len(rows)}; successes without one: {len(missing)}")


def check_budget(keys, rows) -> None:
    """Worst case with Redis down (docs/reliability.md): each instance can spend what remained."""
    spent = sum(spend for api_key, spend in rows.values() if api_key == sha(keys["budget"]))
    print(f"budget key: spent ${spent:.6f} of ${BUDGET} ({100 * (spent / BUDGET - 1):+.1f}%)")
    assert 0.5 * BUDGET < spent <= INSTANCES * BUDGET


def check_rate_limit(outcomes, faults) -> None:
    """Worst case (docs/reliability.md): every gateway process counts what it served itself and
    never serves more than the limit in a window, whatever Redis remembers; so a window admits at
    most one limit per gateway process that lived in it (a restarted gateway is a new process)."""
    admitted = admitted_in_window(outcomes, "rpm", 60.0)
    processes = INSTANCES + sum(f.gateway is not None for f in faults)
    print(f"rpm key: at most {admitted} admitted in a 60 s window (limit {RPM})")
    assert admitted <= RPM * processes
