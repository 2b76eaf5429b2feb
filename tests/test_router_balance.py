"""Choosing deployments: weights, capacity, latency, session affinity, and cooldowns shared via Redis.
The gateway runs in process except for the Redis test, which needs two gateway processes."""

from __future__ import annotations

import collections
import concurrent.futures
import json
import time
import uuid

import anthropic
import pytest

from parley.testing.inprocess import anthropic_client
from parley.testing.procs import anthropic_deployment

MODEL = "claude-sonnet-4-5"


def served_by(gw, n=1, **kw) -> list[str]:
    client = anthropic_client(gw, api_key="sk-test", max_retries=0)
    out = []
    for _ in range(n):
        raw = client.messages.with_raw_response.create(
            model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}], **kw
        )
        out.append(raw.headers["x-parley-deployment"])
    return out


def two(upstream, b, **a_params):
    return [anthropic_deployment(MODEL, upstream, **a_params), anthropic_deployment(MODEL, b)]


def test_simple_shuffle_spreads_by_weight(start_inprocess, upstream, b):
    gw = start_inprocess(
        {
            "model_list": [
                anthropic_deployment(MODEL, upstream, weight=9),
                anthropic_deployment(MODEL, b, weight=1),
            ]
        }
    )
    counts = collections.Counter(served_by(gw, 60))
    assert counts[f"{MODEL}#0"] > counts[f"{MODEL}#1"] > 0


def test_rpm_capacity_sends_overflow_to_the_other_deployment(start_inprocess, upstream, b):
    gw = start_inprocess({"model_list": two(upstream, b, rpm=3, weight=1_000_000)})
    served = served_by(gw, 6)
    assert served[:3] == [f"{MODEL}#0"] * 3
    assert served[3:] == [f"{MODEL}#1"] * 3


def test_rpm_capacity_of_every_deployment_is_429(start_inprocess, upstream):
    gw = start_inprocess({"model_list": [anthropic_deployment(MODEL, upstream, rpm=2)]})
    served_by(gw, 2)
    with pytest.raises(anthropic.RateLimitError) as info:
        served_by(gw)
    assert int(info.value.response.headers["retry-after"]) >= 1


def test_latency_based_prefers_the_faster_deployment(start_inprocess, upstream, b):
    gw = start_inprocess(
        {"model_list": two(upstream, b), "router_settings": {"routing_strategy": "latency-based-routing"}}
    )
    upstream.script(*[{"delay": 0.3}] * 20)
    counts = collections.Counter(served_by(gw, 12))
    assert counts[f"{MODEL}#1"] >= 10


def test_least_busy_avoids_the_busy_deployment(start_inprocess, upstream, b):
    gw = start_inprocess(
        {"model_list": two(upstream, b), "router_settings": {"routing_strategy": "least-busy"}}
    )
    upstream.script({"delay": 2.5})
    b.script({"delay": 2.5})
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(served_by, gw)
        deadline = time.monotonic() + 5
        while not upstream.requests() and not b.requests() and time.monotonic() < deadline:
            time.sleep(0.02)
        busy, idle = (upstream, b) if upstream.requests() else (b, upstream)
        idle.reset()  # drop the idle one's delay: the quick requests below must all land there
        quick = served_by(gw, 4)
        slow_home = slow.result()[0]
    assert len(set(quick)) == 1 and quick[0] != slow_home
    assert len(idle.requests()) == 4 and len(busy.requests()) == 1


def test_session_affinity_sticks_and_moves_when_cooling(start_inprocess, upstream, b):
    config = {"model_list": two(upstream, b), "router_settings": {"allowed_fails": 1, "cooldown_time": 30}}
    gw = start_inprocess(config)
    sessions = [f"session-{i}" for i in range(12)]
    homes = {}
    for s in sessions:
        picks = set(served_by(gw, 3, extra_headers={"x-claude-code-session-id": s}))
        assert len(picks) == 1
        homes[s] = picks.pop()
    assert len(set(homes.values())) == 2  # sessions spread over both deployments
    # metadata.user_id sessions (Claude Code's JSON form) stick too
    user_id = json.dumps({"device_id": "d", "account_uuid": "a", "session_id": "s-json"})
    assert len(set(served_by(gw, 4, metadata={"user_id": user_id}))) == 1
    # a session whose deployment fails moves to the other one, and stays there
    moved = next(s for s in sessions if homes[s] == f"{MODEL}#0")
    upstream.script({"status": 500})
    after = served_by(gw, 3, extra_headers={"x-claude-code-session-id": moved})
    assert after == [f"{MODEL}#1"] * 3


def test_cooldowns_are_shared_through_redis(start_gateway, upstream, b):
    settings = {
        "allowed_fails": 1,
        "cooldown_time": 30,
        "cooldown_sync_interval": 0.0,
        "redis_url": "redis://127.0.0.1:6379/0",
        "redis_key_prefix": f"parley-test-{uuid.uuid4().hex}",
    }
    config = {"model_list": two(upstream, b, weight=1_000_000), "router_settings": settings}
    one, other = start_gateway(config), start_gateway(config)
    upstream.script({"status": 500})
    assert served_by(one) == [f"{MODEL}#1"]  # A failed once on `one` and cooled down
    assert served_by(other, 4) == [f"{MODEL}#1"] * 4  # `other` never tries A
    assert len(upstream.requests()) == 1
