"""`/anthropic/*` with a virtual key: every call logged with its real model and cost, batches once."""

from __future__ import annotations

import time

import anthropic
import pytest

from keys_support import MASTER, Admin

MODEL = "claude-sonnet-4-5-20250929"  # $3 / $15 per million; batch: half


@pytest.fixture(scope="module")
def gateway(start_gateway, fake_upstream, tmp_path_factory):
    return start_gateway(
        {
            "model_list": [{"model_name": "parley-mock", "params": {"model": "mock/parley-mock"}}],
            "general_settings": {
                "master_key": MASTER,
                "database_url": str(tmp_path_factory.mktemp("pass") / "parley.db"),
            },
            "anthropic_passthrough": {"api_base": fake_upstream.url, "api_key": "sk-ant-real-upstream"},
        }
    )


@pytest.fixture
def admin(gateway):
    return Admin(gateway.url)


@pytest.fixture
def key(admin):
    return admin.post("/key/generate", {})["key"]


def test_messages_stream_and_count_tokens_logged_with_model_and_cost(gateway, admin, key, upstream):
    client = anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key=key, max_retries=0)
    upstream.script(
        {"usage": {"input_tokens": 1000, "output_tokens": 200}},
        {"usage": {"input_tokens": 2000, "output_tokens": 100}},
    )
    client.messages.create(
        model=MODEL,
        max_tokens=300,
        messages=[{"role": "user", "content": "a"}],
        extra_body={"litellm_metadata": {"tags": ["proj-x"], "user": "alice"}},
    )
    with client.messages.stream(
        model=MODEL, max_tokens=300, messages=[{"role": "user", "content": "b"}]
    ) as s:
        s.get_final_message()
    client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "c"}])
    rows = admin.wait_logs(3, api_key=key)
    by_route = {}
    for row in rows:
        by_route.setdefault(row["route"], []).append(row)
    created = sorted(by_route["/anthropic/v1/messages"], key=lambda r: r["prompt_tokens"])
    assert [r["model"] for r in created] == [MODEL, MODEL]
    assert created[0]["spend"] == pytest.approx((1000 * 3 + 200 * 15) / 1e6)
    assert created[1]["spend"] == pytest.approx((2000 * 3 + 100 * 15) / 1e6) and created[1]["stream"]
    assert created[0]["end_user"] == "alice" and created[0]["request_tags"] == ["proj-x"]
    [counted] = by_route["/anthropic/v1/messages/count_tokens"]
    assert counted["spend"] == 0 and counted["status"] == 200
    assert "litellm_metadata" not in upstream.requests()[0]["body"]
    for seen in upstream.requests():
        assert seen["headers"]["x-api-key"] == "sk-ant-real-upstream"
        assert key not in str(seen)


def test_batch_results_billed_once_at_batch_rate(gateway, admin, key, upstream):
    client = anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key=key, max_retries=0)
    batch = client.messages.batches.create(
        requests=[
            {
                "custom_id": f"r{i}",
                "params": {
                    "model": MODEL,
                    "max_tokens": 64,
                    "messages": [{"role": "user", "content": f"q{i}"}],
                },
            }
            for i in range(2)
        ]
    )
    deadline = time.monotonic() + 5
    while client.messages.batches.retrieve(batch.id).processing_status != "ended":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    first = list(client.messages.batches.results(batch.id))
    second = list(client.messages.batches.results(batch.id))
    assert len(first) == len(second) == 2
    usage = [r.result.message.usage for r in first]
    expected = sum(u.input_tokens * 3 + u.output_tokens * 15 for u in usage) / 1e6 * 0.5
    time.sleep(1.5)  # let any second (wrong) row reach the log
    billed = [r for r in admin.wait_logs(1, api_key=key) if r["spend"] > 0 and "batches" in r["route"]]
    assert len(billed) == 1
    assert billed[0]["model"] == MODEL
    assert billed[0]["spend"] == pytest.approx(expected)


def test_budget_holds_on_the_pass_through(gateway, admin, upstream):
    """A model the config does not list is priced from the table; the budget caps, then refuses."""
    key = admin.post("/key/generate", {"max_budget": 0.002})["key"]  # Sonnet 4.5: $3 / $15 per M
    client = anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key=key, max_retries=0)
    upstream.script({"content": [{"type": "text", "text": "word " * 400}]})
    raw = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=4096, messages=[{"role": "user", "content": "go"}]
    )
    capped = int(raw.headers["x-parley-max-tokens-capped"])
    assert 0 < capped < 4096 and upstream.last_body()["max_tokens"] == capped
    admin.wait_logs(1, api_key=key)
    with pytest.raises(anthropic.APIStatusError) as info:
        for _ in range(5):
            client.messages.create(model=MODEL, max_tokens=4096, messages=[{"role": "user", "content": "go"}])
    assert info.value.status_code == 402
    assert sum(r["spend"] for r in admin.wait_logs(1, api_key=key)) <= 0.002 + 1e-12
    spent_key = admin.post("/key/generate", {"max_budget": 0})["key"]
    broke = anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key=spent_key, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as info:  # batches are billed later: refused only
        broke.messages.batches.create(
            requests=[
                {
                    "custom_id": "a",
                    "params": {  # when nothing is left
                        "model": MODEL,
                        "max_tokens": 8,
                        "messages": [{"role": "user", "content": "x"}],
                    },
                }
            ]
        )
    assert info.value.status_code == 402
