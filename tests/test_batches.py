"""`/v1/messages/batches` run by the gateway, judged by the official anthropic SDK against a real
`parley serve`: mixed backends, results by custom_id, one spend row per item, paging, owners,
cancel, expiry, budgets."""

from __future__ import annotations

import time

import anthropic
import pytest

from batches_support import MODELS, batch_config, requests_for, upstream_counts, wait_ended
from keys_support import Admin


@pytest.fixture(scope="module")
def gateway(start_gateway, fake_upstream, tmp_path_factory):
    db = str(tmp_path_factory.mktemp("batches") / "parley.db")
    return start_gateway(batch_config(fake_upstream, db, deployment_concurrency=4))


@pytest.fixture
def admin(gateway):
    return Admin(gateway.url)


def client_for(gateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)


def test_mixed_backends_results_by_custom_id_and_one_spend_row_per_item(gateway, admin, upstream):
    key = admin.post("/key/generate", {})["key"]
    client = client_for(gateway, key)
    requests = [
        *requests_for(49),
        {
            "custom_id": "unknown-model",
            "params": {
                "model": "no-such-model",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "x"}],
            },
        },
    ]
    batch = client.messages.batches.create(requests=requests)
    assert batch.id.startswith("msgbatch_") and batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 50 and batch.results_url is None
    assert (batch.expires_at - batch.created_at).total_seconds() == pytest.approx(86400, abs=1)

    ended = wait_ended(client, batch.id)
    counts = ended.request_counts
    assert (counts.processing, counts.succeeded, counts.errored, counts.canceled, counts.expired) == (
        0,
        49,
        1,
        0,
        0,
    )
    assert (
        ended.ended_at is not None
        and ended.results_url == f"{gateway.url}/v1/messages/batches/{batch.id}/results"
    )

    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert len(results) == 50
    for i in range(49):
        result = results[f"item-{i}"]
        assert result.type == "succeeded", result
        assert result.message.content[0].text.endswith(f"question {i}")
        assert result.message.usage.output_tokens > 0
    missing = results["unknown-model"]
    assert missing.type == "errored" and missing.error.error.type == "not_found_error"
    assert "no-such-model" in missing.error.error.message

    # the backends really were used: Anthropic and OpenAI protocols on the fake, mock in process
    paths = [seen["path"] for seen in upstream.requests()]
    assert paths.count("/v1/messages") == 17 and paths.count("/v1/chat/completions") == 16
    assert set(upstream_counts(upstream).values()) == {1}

    rows = [r for r in admin.wait_logs(50, api_key=key) if r["route"] == "/v1/messages/batches"]
    assert sorted(r["request_id"] for r in rows) == sorted(f"{batch.id}_{i}" for i in range(50))
    by_model = {r["model"] for r in rows if r["status"] == 200}
    assert by_model == set(MODELS)
    assert all(r["spend"] > 0 for r in rows if r["model"] == "claude-haiku-4-5")


def test_list_pages_owners_beta_and_delete(gateway, admin):
    key, other = (admin.post("/key/generate", {})["key"] for _ in range(2))
    client, stranger = client_for(gateway, key), client_for(gateway, other)
    ids = [client.messages.batches.create(requests=requests_for(2, ("parley-mock",))).id for _ in range(3)]
    listed = [b.id for b in client.messages.batches.list(limit=2)]  # auto-pagination: two pages
    assert listed == ids[::-1]
    first = client.messages.batches.list(limit=1)
    assert first.has_more and [b.id for b in first.data] == [ids[2]]
    older = client.messages.batches.list(limit=5, after_id=ids[2])
    assert [b.id for b in older.data] == [ids[1], ids[0]] and not older.has_more
    newer = client.messages.batches.list(limit=5, before_id=ids[0])
    assert [b.id for b in newer.data] == [ids[2], ids[1]]

    assert list(stranger.messages.batches.list()) == []
    with pytest.raises(anthropic.NotFoundError):
        stranger.messages.batches.retrieve(ids[0])
    master = client_for(gateway, admin.key)
    assert set(ids) <= {b.id for b in master.messages.batches.list(limit=100)}

    beta = client.beta.messages.batches.retrieve(ids[0])
    assert beta.id == ids[0]
    wait_ended(client, ids[0])
    texts = sorted(r.result.message.content[0].text for r in client.beta.messages.batches.results(ids[0]))
    assert len(texts) == 2 and texts[0].endswith("question 0")

    deleted = client.messages.batches.delete(ids[0])
    assert deleted.id == ids[0] and deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(ids[0])


def test_bad_bodies_get_anthropic_errors(gateway, admin):
    client = client_for(gateway, admin.post("/key/generate", {})["key"])
    for requests, needle in (
        ([], "requests"),
        ([{"custom_id": "a", "params": {"model": "parley-mock", "messages": []}}], "max_tokens"),
        (requests_for(1) + requests_for(1), "used twice"),
        ([{"custom_id": "bad id!", "params": {}}], "custom_id"),
    ):
        with pytest.raises(anthropic.BadRequestError) as info:
            client.messages.batches.create(requests=requests)
        assert needle in info.value.message
    with pytest.raises(anthropic.AuthenticationError):
        client_for(gateway, "sk-wrong").messages.batches.list()
    limited = client_for(gateway, admin.post("/key/generate", {"models": ["parley-mock"]})["key"])
    with pytest.raises(anthropic.PermissionDeniedError):
        limited.messages.batches.create(requests=requests_for(2))


def test_cancel_stops_new_items_and_lets_running_ones_end(gateway, admin, upstream):
    client = client_for(gateway, admin.post("/key/generate", {})["key"])
    upstream.script(*({"delay": 0.5} for _ in range(40)))
    batch = client.messages.batches.create(requests=requests_for(40, ("claude-haiku-4-5",)))
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.delete(batch.id)  # still in progress
    time.sleep(0.3)
    canceled = client.messages.batches.cancel(batch.id)
    assert canceled.processing_status in ("canceling", "ended") and canceled.cancel_initiated_at is not None
    ended = wait_ended(client, batch.id)
    counts = ended.request_counts
    assert counts.succeeded + counts.canceled == 40 and 1 <= counts.succeeded <= 8 and counts.canceled >= 32
    results = list(client.messages.batches.results(batch.id))
    kinds = [r.result.type for r in results]
    assert kinds.count("canceled") == counts.canceled and kinds.count("succeeded") == counts.succeeded
    assert len(upstream_counts(upstream)) == counts.succeeded  # canceled items never went upstream


def test_links_take_the_scheme_a_loopback_proxy_reports(gateway, admin):
    """`parley serve` believes X-Forwarded-Proto from a proxy on loopback (uvicorn's default trust,
    FORWARDED_ALLOW_IPS) on the routes that build links, though the hot routes skip that layer."""
    key = admin.post("/key/generate", {})["key"]
    client = client_for(gateway, key)
    batch = client.messages.batches.create(requests=requests_for(1))
    wait_ended(client, batch.id)
    behind_tls = anthropic.Anthropic(
        base_url=gateway.url, api_key=key, max_retries=0, default_headers={"x-forwarded-proto": "https"}
    )
    host = gateway.url.split("://", 1)[1]
    linked = behind_tls.messages.batches.retrieve(batch.id).results_url
    assert linked == f"https://{host}/v1/messages/batches/{batch.id}/results"
    assert (
        client.messages.batches.retrieve(batch.id).results_url
        == f"http://{host}/v1/messages/batches/{batch.id}/results"
    )
    message = behind_tls.messages.create(
        model=MODELS[0], max_tokens=8, messages=[{"role": "user", "content": "x"}]
    )
    assert message.type == "message"  # the hot route answers the same behind the proxy
