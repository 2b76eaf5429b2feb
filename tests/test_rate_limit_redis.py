"""Rate limits shared through Redis by several gateway processes, and surviving a Redis outage."""

from __future__ import annotations

import concurrent.futures
import time
import uuid

import anthropic
import pytest
import redis

from parley.testing.procs import RedisServer, anthropic_deployment, free_port

MODEL = "claude-sonnet-4-5"


def ask(gw, key="sk-shared"):
    c = anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)
    try:
        c.messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    except anthropic.RateLimitError:
        return 429
    return 200


def test_rpm_limit_holds_across_two_instances(start_gateway, upstream):
    prefix = f"parley-test-{uuid.uuid4().hex}"
    config = {
        "model_list": [anthropic_deployment(MODEL, upstream)],
        "router_settings": {
            "redis_url": "redis://127.0.0.1:6379/0",
            "redis_key_prefix": prefix,
            "default_limits": {"rpm_limit": 10},
        },
    }
    one, two = start_gateway(config), start_gateway(config, workers=2)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: ask(one if i % 2 else two), range(24)))
    assert statuses.count(200) == 10
    assert statuses.count(429) == 14
    assert len(upstream.requests()) == 10
    r = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        assert r.keys(f"{prefix}:rl:key:*")  # the counters live in Redis
    finally:
        r.delete(*r.keys(f"{prefix}:*"))


@pytest.fixture
def own_redis():
    server = RedisServer(free_port())
    yield server
    if server.proc.poll() is None:
        server.stop()


def test_redis_going_away_keeps_serving_on_local_counters(start_gateway, upstream, own_redis):
    url = f"redis://127.0.0.1:{own_redis.port}/0"
    config = {
        "model_list": [anthropic_deployment(MODEL, upstream)],
        "router_settings": {"redis_url": url, "redis_key_prefix": "t", "default_limits": {"rpm_limit": 6}},
        "litellm_settings": {"cache": True, "cache_params": {"type": "redis", "ttl": 60}},
    }
    gw = start_gateway(config)
    assert [ask(gw) for _ in range(2)] == [200, 200]
    assert redis.Redis(port=own_redis.port).keys("t:rl:*")
    own_redis.stop()
    # Redis is gone: requests are still served, and the limit still holds in process, counting the
    # two this process served while Redis decided (before, the window started over: 8 served of 6)
    assert [ask(gw) for _ in range(4)] == [200] * 4
    assert ask(gw) == 429
    assert ask(gw, key="sk-other") == 200
    log = gw.log()
    assert "falling back to IN-PROCESS" in log
    assert log.count("falling back to IN-PROCESS") == 1  # loud once, not once per request
    # Redis comes back (empty): parley reconnects and counts there again
    RedisServer(own_redis.port)
    time.sleep(2.2)
    assert ask(gw, key="sk-third") == 200
    assert redis.Redis(port=own_redis.port).keys("t:rl:*")
    assert "reachable again" in gw.log()
    redis.Redis(port=own_redis.port).shutdown(nosave=True)
