"""Batches survive their gateway: kill -9 mid-batch and restart (SQLite), and two instances
sharing one Postgres batch (leases with `FOR UPDATE SKIP LOCKED`). Real processes throughout."""

from __future__ import annotations

import time

import anthropic
import pytest

from batches_support import batch_config, item_states, requests_for, upstream_counts, wait_ended
from keys_support import MASTER, Admin, create_pg_database, drop_pg_database
from parley.testing.procs import Gateway

UPSTREAM_MODELS = ("claude-haiku-4-5", "gpt-4o-mini")
FINAL = {"succeeded", "errored", "canceled", "expired"}


def _check_complete(client: anthropic.Anthropic, admin: Admin, batch_id: str, n: int) -> None:
    """n results, one per custom id, each the answer to its own question; one spend row each."""
    ended = wait_ended(client, batch_id, timeout=90)
    assert ended.request_counts.succeeded == n, ended.request_counts
    results = list(client.messages.batches.results(batch_id))
    assert sorted(r.custom_id for r in results) == sorted(f"item-{i}" for i in range(n))
    for r in results:
        assert r.result.type == "succeeded"
        assert r.result.message.content[0].text.endswith("question " + r.custom_id.split("-")[1])
    time.sleep(0.5)  # any second (wrong) spend row would have been flushed by now
    rows = [r for r in admin.wait_logs(n) if r["route"] == "/v1/messages/batches"]
    mine = sorted(r["request_id"] for r in rows if r["request_id"].startswith(batch_id))
    assert mine == sorted(f"{batch_id}_{i}" for i in range(n))


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path):
    if request.param == "sqlite":
        yield str(tmp_path / "parley.db")
        return
    name, url = create_pg_database()
    yield url
    drop_pg_database(name)


def test_kill_9_mid_batch_then_restart_runs_each_item_once(upstream, database):
    n, slots = 48, 6
    db = database
    config = batch_config(upstream, db, deployment_concurrency=slots // 2, lease_seconds=1.5)
    upstream.script(*({"delay": 0.25} for _ in range(n)))
    first = Gateway(config)
    try:
        client = anthropic.Anthropic(base_url=first.url, api_key=MASTER, max_retries=0)
        batch = client.messages.batches.create(requests=requests_for(n, UPSTREAM_MODELS))
        deadline = time.monotonic() + 30
        while sum(s in FINAL for s in item_states(db, batch.id).values()) < 12:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        first.kill()
    before = item_states(db, batch.id)
    done_before = {i for i, s in before.items() if s in FINAL}
    assert 12 <= len(done_before) < n, "the kill came too late to test anything"

    second = Gateway(config)
    try:
        client = anthropic.Anthropic(base_url=second.url, api_key=MASTER, max_retries=0)
        _check_complete(client, Admin(second.url), batch.id, n)
    finally:
        second.stop()
    counts = upstream_counts(upstream)
    assert sorted(counts) == sorted(f"question {i}" for i in range(n))
    for i in done_before:  # finished before the kill: never sent again
        assert counts[f"question {i}"] == 1
    repeated = [q for q, c in counts.items() if c > 1]
    assert all(counts[q] == 2 for q in repeated) and len(repeated) <= slots  # only those cut off mid-call


@pytest.fixture
def pg_url():
    name, url = create_pg_database()
    yield url
    drop_pg_database(name)


def test_two_instances_on_postgres_share_a_batch_without_running_an_item_twice(upstream, b, pg_url):
    """Each instance's deployments point at its own fake upstream: both are seen working, and the
    two together were asked each question once."""
    n = 60
    gateways = []
    try:
        for fake in (upstream, b):
            fake.script(*({"delay": 0.1} for _ in range(n)))
            gateways.append(Gateway(batch_config(fake, pg_url, deployment_concurrency=2, lease_seconds=5)))
        client = anthropic.Anthropic(base_url=gateways[0].url, api_key=MASTER, max_retries=0)
        batch = client.messages.batches.create(requests=requests_for(n, UPSTREAM_MODELS))
        other = anthropic.Anthropic(base_url=gateways[1].url, api_key=MASTER, max_retries=0)
        _check_complete(other, Admin(gateways[1].url), batch.id, n)
    finally:
        for gw in gateways:
            gw.stop()
    seen_a, seen_b = upstream_counts(upstream), upstream_counts(b)
    assert seen_a and seen_b, "one instance did all the work"
    assert not set(seen_a) & set(seen_b)
    assert sorted([*seen_a, *seen_b]) == sorted(f"question {i}" for i in range(n))
    assert set(seen_a.values()) == set(seen_b.values()) == {1}


def test_a_stopped_gateway_hands_back_what_it_did_not_finish(upstream, tmp_path):
    """SIGTERM: items in flight finish, items not started go back to the queue (none is left
    `running` for a lease to expire), and the next start completes the batch."""
    n = 30
    db = str(tmp_path / "parley.db")
    config = batch_config(upstream, db, deployment_concurrency=2, lease_seconds=600)
    upstream.script(*({"delay": 0.2} for _ in range(n)))
    first = Gateway(config)
    client = anthropic.Anthropic(base_url=first.url, api_key=MASTER, max_retries=0)
    batch = client.messages.batches.create(requests=requests_for(n, UPSTREAM_MODELS))
    deadline = time.monotonic() + 30
    while sum(s in FINAL for s in item_states(db, batch.id).values()) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert first.stop() == 0
    states = item_states(db, batch.id)
    assert "running" not in states.values() and "queued" in states.values()
    second = Gateway(config)  # a 600 s lease would hold anything left running
    try:
        client = anthropic.Anthropic(base_url=second.url, api_key=MASTER, max_retries=0)
        _check_complete(client, Admin(second.url), batch.id, n)
    finally:
        second.stop()
    assert set(upstream_counts(upstream).values()) == {1}
