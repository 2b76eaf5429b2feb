"""Helpers for the keys-and-spend tests: databases (SQLite file, or a fresh Postgres database per
session), an admin client, and gateway configs."""

from __future__ import annotations

import asyncio
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import orjson
import pytest

MASTER = "sk-parley-master-keys-test"
PG_ADMIN = "postgresql://127.0.0.1:5432/test"


def _pg(statement: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect("postgresql://127.0.0.1:5432/test")
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def create_pg_database() -> tuple[str, str]:
    name = "parley_test_" + secrets.token_hex(6)
    _pg(f'CREATE DATABASE "{name}"')
    return name, f"postgresql://127.0.0.1:5432/{name}"


def drop_pg_database(name: str) -> None:
    _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_urls(kind: str, tmp_path_factory: Any) -> Any:
    """For a fixture parametrized over "sqlite" and "postgres": `yield from database_urls(...)`
    gives a fresh database's URL and drops a Postgres one afterwards."""
    if kind == "sqlite":
        yield str(tmp_path_factory.mktemp("db") / "parley.db")
        return
    name, url = create_pg_database()
    yield url
    drop_pg_database(name)


class Reply:
    def __init__(self, status: int, body: bytes) -> None:
        self.status_code = status
        self.text = body.decode("utf-8", "replace")

    def json(self) -> Any:
        return orjson.loads(self.text)


class Admin:
    """The admin API with the master key, over real HTTP or to an in-process gateway (`Admin.of`)."""

    def __init__(self, url: str, key: str = MASTER, urlopen: Any = None) -> None:
        self.url = url
        self.key = key
        self.urlopen = urlopen or urllib.request.urlopen

    @classmethod
    def of(cls, gateway: Any, key: str = MASTER) -> Admin:
        """The admin API of a gateway process, or of one in this process (no sockets)."""
        return cls(gateway.url, key, getattr(gateway, "urlopen", None))

    def raw(self, method: str, path: str, data: bytes | None, **params: Any) -> Reply:
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        req = urllib.request.Request(
            self.url + path + query,
            data=data,
            method=method,
            headers={"x-api-key": self.key, "content-type": "application/json"},
        )
        try:
            with self.urlopen(req, timeout=30) as r:
                return Reply(r.status, r.read())
        except urllib.error.HTTPError as e:
            return Reply(e.code, e.read())

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Reply:
        return self.raw(method, path, orjson.dumps(body) if body is not None else None, **params)

    def post(self, path: str, body: Any = None) -> Any:
        r = self.call("POST", path, body if body is not None else {})
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r.json()

    def get(self, path: str, **params: Any) -> Any:
        r = self.call("GET", path, **params)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r.json()

    def wait_logs(self, count: int, timeout: float = 10.0, **params: Any) -> list[dict]:
        """Spend-log rows matching `params`, once at least `count` are there."""
        deadline = time.monotonic() + timeout
        while True:
            data = self.get("/spend/logs", page_size=1000, **params)["data"]
            if len(data) >= count or time.monotonic() > deadline:
                return data
            time.sleep(0.1)


def gateway_config(upstream: Any, database_url: str, **general: Any) -> dict:
    from parley.testing.procs import anthropic_deployment

    return {
        "model_list": [
            anthropic_deployment("claude-sonnet-4-5", upstream, model="claude-sonnet-4-5-20250929"),
            anthropic_deployment("claude-haiku-4-5", upstream),
            anthropic_deployment(
                "priced",
                upstream,
                model="custom-model",
                input_cost_per_token=0.00001,
                output_cost_per_token=0.00002,
            ),
        ],
        "general_settings": {
            "master_key": MASTER,
            "database_url": database_url,
            "spend_flush_interval": 0.1,
            **general,
        },
    }


def redis_config(upstream: Any, database_url: str, redis_url: str, prefix: str = "t", **router: Any) -> dict:
    """`gateway_config` with a Redis (`router`: more router_settings)."""
    cfg = gateway_config(upstream, database_url)
    cfg["router_settings"] = {"redis_url": redis_url, "redis_key_prefix": prefix, **router}
    return cfg


def call(url: str, key: str, max_tokens: int = 200, timeout: float = 30) -> int:
    """One `/v1/messages` call through the anthropic SDK (no retries): its status."""
    import anthropic

    client = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, timeout=timeout)
    try:
        client.messages.create(
            model="claude-sonnet-4-5", max_tokens=max_tokens, messages=[{"role": "user", "content": "go"}]
        )
    except anthropic.APIStatusError as e:
        return e.status_code
    return 200


def pick_gateway(request: Any, in_process: str, served: str) -> Any:
    """For a module with both: the in-process gateway fixture `in_process`, or the `parley serve`
    fixture `served` for tests marked `process` (streaming relays, disconnects)."""
    return request.getfixturevalue(served if request.node.get_closest_marker("process") else in_process)


def gateway_fixtures(make_config: Any) -> tuple[Any, Any, Any]:
    """A module's `in_process`, `served` and `gateway` fixtures for one gateway config,
    `make_config(fake_upstream)`: tests get the in-process gateway, those marked `process` the
    `parley serve` one (see `pick_gateway`)."""

    @pytest.fixture(scope="module")
    def in_process(start_inprocess_module: Any, fake_upstream: Any) -> Any:
        return start_inprocess_module(make_config(fake_upstream))

    @pytest.fixture(scope="module")
    def served(start_gateway: Any, fake_upstream: Any) -> Any:
        return start_gateway(make_config(fake_upstream))

    @pytest.fixture
    def gateway(request: Any) -> Any:
        return pick_gateway(request, "in_process", "served")

    return in_process, served, gateway
