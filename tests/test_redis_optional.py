"""Redis is optional at every point: down at startup or later, the gateway serves, says so once,
reconnects by itself, and /health/readiness reports `degraded` with the reason meanwhile."""

from __future__ import annotations

import os
import sys
import time
import urllib.request

import anthropic
import orjson

from parley.testing.procs import Gateway, RedisServer, ServerProcess, free_port

CLEAN_ENV = {
    k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PARLEY_MASTER_KEY", "REDIS_URL")
}
MODEL = {"model_name": "m", "params": {"model": "mock/m"}}


def readiness(url: str) -> dict:
    with urllib.request.urlopen(url + "/health/readiness", timeout=10) as r:
        assert r.status == 200
        return orjson.loads(r.read())


def wait_status(url: str, status: str, timeout: float = 40.0) -> dict:
    deadline = time.monotonic() + timeout
    body = readiness(url)
    while body["status"] != status and time.monotonic() < deadline:
        time.sleep(0.3)
        body = readiness(url)
    return body


def ask(url: str) -> str:
    client = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)
    reply = client.messages.create(model="m", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    return reply.content[0].text  # type: ignore[union-attr]


def test_redis_down_at_start_then_up_then_down_again():
    port = free_port()
    gw = Gateway(
        {
            "model_list": [MODEL],
            "router_settings": {"redis_url": f"redis://127.0.0.1:{port}", "redis_key_prefix": f"t{port}"},
        },
        env=CLEAN_ENV,
    )
    redis = None
    try:
        body = readiness(gw.url)
        assert body["status"] == "degraded"
        assert body["degraded"]["redis"].startswith("unreachable (")
        assert "per process" in body["degraded"]["redis"]
        assert "hi" in ask(gw.url)  # serves meanwhile

        redis = RedisServer(port)
        assert wait_status(gw.url, "healthy") == {"status": "healthy"}  # reconnected by itself

        redis.kill()
        body = wait_status(gw.url, "degraded")
        assert "redis" in body["degraded"]
        assert "hi" in ask(gw.url)
    finally:
        gw.stop()
        if redis is not None:
            redis.stop()
    log = gw.log()
    assert "Traceback" not in log
    assert log.count("is unreachable (") == 1  # the startup warning, printed once
    assert log.count("falling back to IN-PROCESS") == 2  # once per outage: at start, and after the kill
    assert "is reachable again" in log


def test_no_redis_and_a_single_worker_is_healthy_without_a_word():
    gw = Gateway({"model_list": [MODEL]}, env=CLEAN_ENV)
    try:
        assert readiness(gw.url) == {"status": "healthy"}
    finally:
        gw.stop()
    assert "Redis" not in gw.log()


def test_several_workers_without_redis_warn_once():
    gw = Gateway({"model_list": [MODEL]}, env=CLEAN_ENV, workers=2)
    try:
        assert "hi" in ask(gw.url)
    finally:
        gw.stop()
    log = gw.log()
    assert log.count("warning: 2 workers and no Redis: rate limits") == 1
    assert "set router_settings.redis_url to share them" in log


def test_num_workers_is_litellms_spelling_of_workers():
    port = free_port()
    path = os.path.join(os.path.dirname(__file__), "..", "config", "default.yaml")
    proc = ServerProcess(
        [sys.executable, "-m", "parley", "--config", path, "--port", str(port), "--num_workers", "2"],
        port,
        "/health/readiness",
        env=CLEAN_ENV,
    )
    proc.stop()
    assert "(2 workers)" in proc.log()
