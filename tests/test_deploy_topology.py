"""The topology of deploy/compose.yaml, run on this machine without Docker: a Postgres database,
a Redis, the gateway services as `parley` processes with the compose file's command and
environment, and nginx with deploy/nginx.conf in front (skipped, and said so, when nginx is not
installed). A key's budget holds across both instances: racing requests through the load balancer
never spend more than it."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import anthropic
import pytest
import yaml

from keys_support import Admin, create_pg_database, drop_pg_database
from parley.testing.procs import FakeUpstream, RedisServer, ServerProcess, free_port

DEPLOY = Path(__file__).parent.parent / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
MASTER = "sk-deploy-master"
MAX_TOKENS = 200
COST_PER_CALL = 8 * 3e-6 + MAX_TOKENS * 15e-6  # claude-sonnet-4-5 list prices, replies cut at max_tokens
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def gateway_services() -> dict[str, dict]:
    return {name: svc for name, svc in COMPOSE["services"].items() if svc.get("command", [""])[0] == "parley"}


def test_the_compose_file_has_the_documented_topology():
    services = COMPOSE["services"]
    assert {"postgres", "redis", "nginx"} <= set(services)
    gateways = gateway_services()
    assert len(gateways) == 2
    for svc in gateways.values():
        assert {"DATABASE_URL", "REDIS_URL", "PARLEY_MASTER_KEY"} <= set(svc["environment"])
    conf = (DEPLOY / "nginx.conf").read_text()
    assert all(f"server {name}:4000" in conf for name in gateways)
    dockerfile = (DEPLOY.parent / "Dockerfile").read_text()
    assert "USER parley" in dockerfile and "HEALTHCHECK" in dockerfile


class Topology:
    def __init__(self, tmp: Path, upstream: FakeUpstream) -> None:
        self.db_name, db_url = create_pg_database()
        self.redis = RedisServer(free_port())
        config = yaml.safe_load((DEPLOY / "config.yaml").read_text())
        for entry in config["model_list"]:
            entry["litellm_params"]["api_base"] = upstream.url  # the fake stands in for Anthropic
        config_path = tmp / "config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        self.gateways: list[ServerProcess] = []
        for svc in gateway_services().values():
            env = dict(svc["environment"])
            query = env["DATABASE_URL"].partition("?")[2]
            env.update(
                DATABASE_URL=f"{db_url}?{query}" if query else db_url,
                REDIS_URL=self.redis.url,
                PARLEY_MASTER_KEY=MASTER,
                ANTHROPIC_API_KEY="sk-ant-upstream-real",
                PARLEY_REDIS_PREFIX=f"deploy{self.redis.port}",
            )
            self.gateways.append(self._start(svc["command"], config_path, env))

    @staticmethod
    def _start(command: list[str], config: Path, env: dict[str, str]) -> ServerProcess:
        args = list(command[1:])
        port = free_port()
        for flag, value in (("--config", str(config)), ("--port", str(port)), ("--host", "127.0.0.1")):
            args[args.index(flag) + 1] = value
        clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        return ServerProcess(
            [sys.executable, "-m", "parley", *args], port, "/health/readiness", {**clean, **env}
        )

    def stop(self) -> None:
        for gw in self.gateways:
            gw.stop()
        self.redis.stop()
        drop_pg_database(self.db_name)


class Nginx:
    """nginx running deploy/nginx.conf with the gateways' and its own addresses on loopback."""

    def __init__(self, tmp: Path, gateways: list[ServerProcess]) -> None:
        conf = (DEPLOY / "nginx.conf").read_text()
        for name, gw in zip(gateway_services(), gateways, strict=True):
            conf = conf.replace(f"server {name}:4000", f"server 127.0.0.1:{gw.port}")
        self.port = free_port()
        conf = conf.replace("listen 4000;", f"listen 127.0.0.1:{self.port};")
        self.dir = tmp / "nginx"
        self.dir.mkdir()
        (self.dir / "nginx.conf").write_text(conf)
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                NGINX or "nginx",
                "-p",
                str(self.dir),
                "-c",
                str(self.dir / "nginx.conf"),
                "-e",
                str(self.dir / "error.log"),
                "-g",
                f"daemon off; pid {self.dir}/nginx.pid;",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health/liveness", timeout=1):
                    return
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(
                        f"nginx did not start: {(self.dir / 'error.log').read_text(errors='replace')}"
                    ) from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def topology(tmp_path_factory, fake_upstream):
    top = Topology(tmp_path_factory.mktemp("deploy"), fake_upstream)
    yield top
    top.stop()


async def race(urls: list[str], key: str, n: int) -> list[str]:
    clients = [anthropic.AsyncAnthropic(base_url=u, api_key=key, max_retries=0, timeout=60) for u in urls]

    async def one(i: int) -> str:
        try:
            raw = await clients[i % len(clients)].messages.with_raw_response.create(
                model="claude-sonnet-4-5", max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": "go"}]
            )
        except anthropic.PaymentRequiredError:
            return "402"
        # a call admitted with less than the budget's room for a whole one has max_tokens capped
        return "capped" if raw.headers.get("x-parley-max-tokens-capped") else "ok"

    try:
        return await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        for c in clients:
            await c.close()


def spend_race(
    entry: list[str], admin: Admin, upstream: FakeUpstream, n: int = 30, budget_calls: int = 6
) -> None:
    budget = budget_calls * COST_PER_CALL
    key = admin.post("/key/generate", {"max_budget": budget})["key"]
    upstream.script(*[{"content": [{"type": "text", "text": "word " * 400}], "delay": 0.3}] * n)
    kinds = asyncio.run(race(entry, key, n))
    assert 1 <= kinds.count("ok") <= budget_calls, kinds
    rows = admin.wait_logs(n, api_key=key)
    spent = sum(r["spend"] for r in rows)
    assert spent <= budget + 1e-9
    assert spent > 0.5 * budget


def test_a_budget_holds_across_both_instances(topology, upstream):
    urls = [gw.url for gw in topology.gateways]
    admin = Admin(urls[0], MASTER)
    before = [gw.log().count('"route"') for gw in topology.gateways]
    spend_race(urls, admin, upstream)  # requests alternate between the two instances
    after = [gw.log().count('"route"') for gw in topology.gateways]
    # both took part; which one admitted the few calls the budget allows is a race either can win
    assert all(a > b for a, b in zip(after, before, strict=True))
    _redis_never_taken_for_down(topology)


def _redis_never_taken_for_down(topology) -> None:
    """Redis was up: no instance fell back to per-process budgets (once, each instance's first
    redis-py call imported redis-py inside the 0.5 s timeout; 9 calls passed a budget of 6)."""
    for gw in topology.gateways:
        assert "IN-PROCESS" not in gw.log(), gw.log()[-3000:]


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light)")
def test_through_nginx_as_in_the_compose_file(topology, upstream, tmp_path):
    lb = Nginx(tmp_path, topology.gateways)
    try:
        with urllib.request.urlopen(lb.url + "/health/readiness", timeout=5) as r:
            assert r.status == 200
        before = [gw.log().count('"route"') for gw in topology.gateways]
        spend_race([lb.url], Admin(lb.url, MASTER), upstream)
        after = [gw.log().count('"route"') for gw in topology.gateways]
        assert all(a > b for a, b in zip(after, before, strict=True))  # nginx spread the load
        _redis_never_taken_for_down(topology)
        upstream.reset()  # replies scripted for requests the budget refused
        stream = anthropic.Anthropic(base_url=lb.url, api_key=MASTER, max_retries=0)
        with stream.messages.stream(
            model="claude-sonnet-4-5", max_tokens=16, messages=[{"role": "user", "content": "streamed"}]
        ) as s:
            assert "streamed" in s.get_final_text()
    finally:
        lb.stop()


def test_with_redis_gone_a_blocked_key_is_refused_by_the_other_instance_within_seconds(topology, upstream):
    """Last in this module: it kills the topology's Redis. Without pub/sub to announce the block,
    the other instance re-reads key records every second."""
    one, two = topology.gateways
    key = Admin(one.url, MASTER).post("/key/generate", {})["key"]
    client = anthropic.Anthropic(base_url=two.url, api_key=key, max_retries=0)
    ask = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    client.messages.create(**ask)  # cached on instance two
    topology.redis.kill()
    time.sleep(2.5)  # the invalidation listeners notice (their reads time out within a second or so)
    Admin(one.url, MASTER).post("/key/block", {"key": key})
    blocked_at = time.monotonic()
    while True:
        try:
            client.messages.create(**ask)
        except anthropic.AuthenticationError:
            break
        assert time.monotonic() - blocked_at < 5, "instance two still serves a blocked key"
        time.sleep(0.1)
    assert "key records are re-read every 1s" in two.log()
