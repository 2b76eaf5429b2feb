"""Batch items under the key's policies: budgets reserved per item (an exhausted budget errors the
rest with the budget error, nothing more goes upstream), the configured discount on the bill, and
expiry. Real `parley serve` processes, the official anthropic SDK."""

from __future__ import annotations

import anthropic
import pytest

from batches_support import IN, OUT, batch_config, priced_config, requests_for, upstream_counts, wait_ended
from keys_support import MASTER, Admin


@pytest.fixture(scope="module")
def gateway(start_gateway, fake_upstream, tmp_path_factory):
    db = str(tmp_path_factory.mktemp("batch-policies") / "parley.db")
    return start_gateway(priced_config(fake_upstream, db, deployment_concurrency=1, discount=0.25))


def test_budget_covers_some_items_and_the_rest_are_errored_with_the_budget_error(gateway, upstream):
    admin = Admin(gateway.url)
    budget = 0.003
    key = admin.post("/key/generate", {"max_budget": budget})["key"]
    client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    n = 30
    batch = client.messages.batches.create(requests=requests_for(n, ("priced",), max_tokens=100))
    ended = wait_ended(client, batch.id)
    counts = ended.request_counts
    assert 1 <= counts.succeeded < n and counts.succeeded + counts.errored == n, counts
    results = list(client.messages.batches.results(batch.id))
    errors = [r.result.error.error for r in results if r.result.type == "errored"]
    assert {e.type for e in errors} == {"billing_error"}
    assert all("budget exceeded" in e.message for e in errors)
    assert len(upstream_counts(upstream)) == counts.succeeded  # refused items never went upstream
    rows = [r for r in admin.wait_logs(n, api_key=key) if r["route"] == "/v1/messages/batches"]
    assert len(rows) == n  # one row per item, refused ones included (status 402, no cost)
    assert sum(r["spend"] for r in rows) <= budget + 1e-12
    assert sorted(r["status"] for r in rows) == [200] * counts.succeeded + [402] * counts.errored


def test_gateway_run_items_are_billed_at_the_configured_discount(gateway, upstream):
    admin = Admin(gateway.url)
    key = admin.post("/key/generate", {})["key"]
    client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    upstream.script({"usage": {"input_tokens": 1000, "output_tokens": 500}})
    batch = client.messages.batches.create(requests=requests_for(1, ("priced",)))
    wait_ended(client, batch.id)
    [row] = admin.wait_logs(1, api_key=key)
    assert row["spend"] == pytest.approx((1000 * IN + 500 * OUT) * 0.75)


def test_batches_expire_and_waiting_items_become_expired(start_gateway, upstream, tmp_path):
    gw = start_gateway(
        batch_config(upstream, str(tmp_path / "parley.db"), deployment_concurrency=1, expiry_hours=1.5 / 3600)
    )
    client = anthropic.Anthropic(base_url=gw.url, api_key=MASTER, max_retries=0)
    upstream.script(*({"delay": 0.4} for _ in range(20)))
    batch = client.messages.batches.create(requests=requests_for(20, ("claude-haiku-4-5",)))
    assert (batch.expires_at - batch.created_at).total_seconds() == pytest.approx(1.5, abs=0.01)
    ended = wait_ended(client, batch.id)
    counts = ended.request_counts
    assert counts.succeeded >= 1 and counts.expired >= 10 and counts.succeeded + counts.expired == 20
    kinds = [r.result.type for r in client.messages.batches.results(batch.id)]
    assert kinds.count("expired") == counts.expired
    assert len(upstream_counts(upstream)) == counts.succeeded
