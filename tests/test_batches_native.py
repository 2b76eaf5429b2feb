"""Items for an Anthropic deployment with `native_batches: true` go upstream as one native Message
Batch (the fake upstream's batches API), billed once per item at Anthropic's batch price; after a
kill -9 the restarted gateway polls the same upstream batch instead of sending the items again;
cancel reaches the upstream batch. Real processes, the official anthropic SDK."""

from __future__ import annotations

import time

import anthropic
import orjson
import pytest

from batches_support import batch_config, item_states, requests_for, wait_ended
from keys_support import MASTER, Admin
from parley.testing.procs import Gateway, anthropic_deployment

MIXED = ("claude-native", "gpt-4o-mini", "parley-mock")


def native_config(upstream, db: str, end_after: float) -> dict:
    config = batch_config(upstream, db, native_gather_seconds=0.3, native_poll_seconds=0.2, lease_seconds=1.5)
    config["model_list"].append(
        anthropic_deployment(
            "claude-native",
            upstream,
            model="claude-haiku-4-5",
            native_batches=True,
            extra_headers={"x-fake-end-after": str(end_after)},
        )
    )
    return config


def _native_posts(upstream) -> list[dict]:
    return [r for r in upstream.requests() if r["method"] == "POST" and r["path"] == "/v1/messages/batches"]


def _wait_native_post(upstream) -> None:
    deadline = time.monotonic() + 20
    while not _native_posts(upstream):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_native_items_go_in_one_upstream_batch_billed_at_the_batch_price(start_gateway, upstream, tmp_path):
    gw = start_gateway(native_config(upstream, str(tmp_path / "parley.db"), end_after=0.5))
    admin = Admin(gw.url)
    key = admin.post("/key/generate", {})["key"]
    client = anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)
    batch = client.messages.batches.create(requests=requests_for(12, MIXED))
    ended = wait_ended(client, batch.id)
    assert ended.request_counts.succeeded == 12

    [post] = _native_posts(upstream)
    sent = orjson.loads(post["body"])["requests"]
    native_idx = [i for i in range(12) if MIXED[i % 3] == "claude-native"]
    assert [r["custom_id"] for r in sent] == [f"{batch.id}_{i}" for i in native_idx]
    assert {r["params"]["model"] for r in sent} == {"claude-haiku-4-5"}
    assert post["headers"]["x-api-key"] == "sk-ant-upstream-real" and key not in str(post)
    assert not [r for r in upstream.requests() if r["path"] == "/v1/messages"]  # no item sent one by one

    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    for i in range(12):
        assert results[f"item-{i}"].message.content[0].text.endswith(f"question {i}")
    rows = {r["request_id"]: r for r in admin.wait_logs(12, api_key=key)}
    assert sorted(rows) == sorted(f"{batch.id}_{i}" for i in range(12))
    for i in native_idx:
        usage = results[f"item-{i}"].message.usage
        assert usage.service_tier == "batch"
        row = rows[f"{batch.id}_{i}"]
        assert row["model"] == "claude-native" and row["model_id"] == "claude-native#3"
        assert row["spend"] == pytest.approx(
            (usage.input_tokens * 1.0 + usage.output_tokens * 5.0) / 1e6 * 0.5
        )


def test_kill_9_while_the_native_batch_runs_polls_it_again_and_sends_nothing_twice(upstream, tmp_path):
    db = str(tmp_path / "parley.db")
    config = native_config(upstream, db, end_after=4.0)
    first = Gateway(config)
    try:
        client = anthropic.Anthropic(base_url=first.url, api_key=MASTER, max_retries=0)
        batch = client.messages.batches.create(requests=requests_for(6, ("claude-native",)))
        _wait_native_post(upstream)
        time.sleep(0.3)  # the upstream id is recorded on the items
    finally:
        first.kill()
    assert set(item_states(db, batch.id).values()) == {"running"}
    second = Gateway(config)
    try:
        client = anthropic.Anthropic(base_url=second.url, api_key=MASTER, max_retries=0)
        ended = wait_ended(client, batch.id, timeout=30)
        assert ended.request_counts.succeeded == 6
        results = list(client.messages.batches.results(batch.id))
        assert sorted(r.custom_id for r in results) == [f"item-{i}" for i in range(6)]
        rows = [r for r in Admin(second.url).wait_logs(6) if r["request_id"].startswith(batch.id)]
        assert sorted(r["request_id"] for r in rows) == [f"{batch.id}_{i}" for i in range(6)]
    finally:
        second.stop()
    assert len(_native_posts(upstream)) == 1


def test_cancel_reaches_the_upstream_batch(start_gateway, upstream, tmp_path):
    gw = start_gateway(native_config(upstream, str(tmp_path / "parley.db"), end_after=60))
    client = anthropic.Anthropic(base_url=gw.url, api_key=MASTER, max_retries=0)
    batch = client.messages.batches.create(requests=requests_for(4, ("claude-native",)))
    _wait_native_post(upstream)
    client.messages.batches.cancel(batch.id)
    ended = wait_ended(client, batch.id, timeout=20)
    assert ended.request_counts.canceled == 4
    assert [r.result.type for r in client.messages.batches.results(batch.id)] == ["canceled"] * 4
    assert any(r["path"].endswith("/cancel") for r in upstream.requests())
