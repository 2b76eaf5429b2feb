"""A database outage: cached keys keep working, anything that needs the database gets 503 with a
reason (never a 500), the log is not flooded, and service comes back without a restart.

The outage is real: the test's own throwaway Postgres database stops accepting connections and
its sessions are ended (the machine's server itself is left alone)."""

from __future__ import annotations

import time

import anthropic
import pytest

from keys_support import MASTER, Admin, _pg, create_pg_database, drop_pg_database, gateway_config

pytestmark = pytest.mark.process


@pytest.fixture
def outage_db():
    name, url = create_pg_database()
    yield name, url
    _pg(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    drop_pg_database(name)


def _down(name: str) -> None:
    _pg(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    _pg(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")


def _up(name: str) -> None:
    _pg(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def _ask(gw, key: str):
    client = anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)
    return client.messages.with_raw_response.create(
        model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )


def test_database_outage_gives_503_for_what_needs_it_and_recovers(start_gateway, upstream, outage_db):
    name, url = outage_db
    gw = start_gateway(gateway_config(upstream, url))
    admin = Admin(gw.url)
    cached = admin.post("/key/generate", {"max_budget": 10})["key"]
    fresh = admin.post("/key/generate", {})["key"]
    assert _ask(gw, cached).status_code == 200  # now in the gateway's key cache

    _down(name)
    until = time.monotonic() + 6  # past the budget ledger's refresh interval (5 s)
    while time.monotonic() < until:
        assert _ask(gw, cached).status_code == 200  # cached keys keep working
    for key in (fresh, "sk-not-a-key"):
        with pytest.raises(anthropic.APIStatusError) as info:
            _ask(gw, key)
        assert info.value.status_code == 503
        assert "database" in info.value.message
    listing = admin.call("GET", "/key/list")
    assert listing.status_code == 503 and "database" in listing.json()["error"]["message"]

    _up(name)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if _ask(gw, fresh).status_code == 200:
                break
        except anthropic.APIStatusError:
            time.sleep(0.2)
    assert _ask(gw, fresh).status_code == 200  # back without a restart
    log = gw.log()
    assert log.count("Task exception was never retrieved") == 0
    assert MASTER not in log and fresh not in log
