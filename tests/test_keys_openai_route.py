"""Virtual keys, budgets and spend on `/v1/chat/completions`, seen through the openai SDK.
(gateway in process: parley.testing.inprocess)."""

from __future__ import annotations

import openai
import pytest

from keys_support import Admin, gateway_config

LONG = "word " * 400


@pytest.fixture(scope="module")
def gateway(start_inprocess_module, fake_upstream, tmp_path_factory):
    return start_inprocess_module(
        gateway_config(fake_upstream, str(tmp_path_factory.mktemp("oa") / "parley.db"))
    )


@pytest.fixture
def admin(gateway):
    return Admin.of(gateway)


def client(gateway, key):
    return gateway.openai(api_key=key, max_retries=0)


def test_allowed_model_logged_and_disallowed_model_is_403(gateway, admin, upstream):
    key = admin.post("/key/generate", {"models": ["claude-haiku-*"]})["key"]
    upstream.script({"usage": {"input_tokens": 100, "output_tokens": 10}})
    reply = client(gateway, key).chat.completions.create(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}], user="bob"
    )
    assert reply.usage.prompt_tokens == 100
    [row] = admin.wait_logs(1, api_key=key)
    assert (row["model"], row["end_user"], row["route"]) == (
        "claude-haiku-4-5",
        "bob",
        "/v1/chat/completions",
    )
    assert row["spend"] == pytest.approx((100 * 1 + 10 * 5) / 1e6)  # Haiku 4.5 list prices
    with pytest.raises(openai.PermissionDeniedError) as info:
        client(gateway, key).chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.body["type"] == "permission_error"  # OpenAI envelope: body is the error object


def test_budget_caps_max_completion_tokens_then_refuses(gateway, admin, upstream):
    # Haiku 4.5: $1 / $5 per million. Room for the prompt and ~100 output tokens, not 4096.
    key = admin.post("/key/generate", {"max_budget": 0.0006})["key"]
    upstream.script({"content": [{"type": "text", "text": LONG}]})
    raw = client(gateway, key).chat.completions.with_raw_response.create(
        model="claude-haiku-4-5", max_completion_tokens=4096, messages=[{"role": "user", "content": "go"}]
    )
    capped = int(raw.headers["x-parley-max-tokens-capped"])
    assert 0 < capped < 4096
    assert upstream.last_body()["max_tokens"] == capped
    assert raw.parse().usage.completion_tokens <= capped
    admin.wait_logs(1, api_key=key)
    with pytest.raises(openai.APIStatusError) as info:
        for _ in range(5):
            client(gateway, key).chat.completions.create(
                model="claude-haiku-4-5",
                max_completion_tokens=4096,
                messages=[{"role": "user", "content": "go"}],
            )
    assert info.value.status_code == 402
    assert "budget" in info.value.message
    spent = sum(r["spend"] for r in admin.wait_logs(1, api_key=key))
    assert spent <= 0.0006 + 1e-12
