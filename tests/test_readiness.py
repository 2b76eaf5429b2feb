"""/health/readiness names a database that went away (`degraded`, status 200, still serving) and
turns healthy again when it is back."""

from __future__ import annotations

import os
import sys
import time
import urllib.request

import anthropic
import orjson
import pytest

from parley.testing.postgres import PgServer, postgres_available
from parley.testing.procs import ServerProcess, free_port

pytestmark = pytest.mark.skipif(not postgres_available(), reason="PostgreSQL binaries not installed")
MASTER = "sk-readiness-master"


def readiness(url: str) -> dict:
    with urllib.request.urlopen(url + "/health/readiness", timeout=10) as r:
        assert r.status == 200
        return orjson.loads(r.read())


def wait_for(url: str, status: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    body = readiness(url)
    while body["status"] != status and time.monotonic() < deadline:
        time.sleep(0.3)
        body = readiness(url)
    return body


def test_database_outage_is_degraded_then_healthy(tmp_path):
    pg = PgServer()
    pg.start()
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "model_list: [{model_name: m, params: {model: mock/m}}]\n"
        f"general_settings: {{master_key: {MASTER}, database_url: '{pg.url}'}}\n"
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "PARLEY_MASTER_KEY")}
    gw = ServerProcess(
        [sys.executable, "-m", "parley", "--config", str(path), "--port", str(port)],
        port,
        "/health/liveness",
        env,
    )
    try:
        assert readiness(gw.url) == {"status": "healthy"}
        pg.stop()
        body = wait_for(gw.url, "degraded")
        assert body["degraded"]["database"].startswith("unreachable (")
        assert "local journal" in body["degraded"]["database"]
        client = anthropic.Anthropic(base_url=gw.url, api_key=MASTER, max_retries=0)
        assert client.messages.create(
            model="m", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        ).content
        pg.start()
        assert wait_for(gw.url, "healthy") == {"status": "healthy"}
    finally:
        gw.stop()
        pg.remove()
