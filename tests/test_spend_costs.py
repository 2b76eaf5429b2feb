"""Cost of calls: cache tokens at their own rates, price overrides, and streams cut short.
One database; the gateway runs in process, streams on a `parley serve` process (marked `process`)."""

from __future__ import annotations

import time

import anthropic
import pytest

from keys_support import Admin, gateway_config, pick_gateway
from parley.testing.inprocess import anthropic_client


@pytest.fixture(scope="module")
def database_url(tmp_path_factory):
    return str(tmp_path_factory.mktemp("costs") / "parley.db")


@pytest.fixture(scope="module")
def in_process(start_inprocess_module, fake_upstream, database_url):
    return start_inprocess_module(gateway_config(fake_upstream, database_url))


@pytest.fixture(scope="module")
def served(start_gateway, fake_upstream, database_url):
    return start_gateway(gateway_config(fake_upstream, database_url))


@pytest.fixture
def gateway(request):
    return pick_gateway(request, "in_process", "served")


@pytest.fixture
def admin(gateway):
    return Admin.of(gateway)


@pytest.fixture
def key(admin):
    return admin.post("/key/generate", {})["key"]


def test_cached_prompt_is_charged_at_cache_rates(gateway, admin, key, upstream):
    upstream.script(
        {
            "usage": {
                "input_tokens": 100,
                "output_tokens": 50,
                "cache_creation_input_tokens": 2000,
                "cache_read_input_tokens": 10000,
                "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 1500},
            }
        }
    )
    client = anthropic_client(gateway, api_key=key, max_retries=0)
    message = client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=64,
        system=[{"type": "text", "text": "long rules", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "hi"}],
    )
    assert message.usage.cache_read_input_tokens == 10000
    # Sonnet 4.5 per million: input $3, output $15, 5-minute write $3.75, 1-hour write $6, read $0.30
    by_hand = (100 * 3 + 50 * 15 + 500 * 3.75 + 1500 * 6 + 10000 * 0.30) / 1e6
    assert by_hand == pytest.approx(0.014925)
    [row] = admin.wait_logs(1, api_key=key)
    assert row["spend"] == pytest.approx(by_hand, rel=1e-12)
    assert (row["cache_read_input_tokens"], row["cache_creation_input_tokens"]) == (10000, 2000)
    assert row["estimated"] is False


def test_cache_writes_without_breakdown_use_the_5_minute_rate(gateway, admin, key, upstream):
    upstream.script(
        {
            "usage": {
                "input_tokens": 10,
                "output_tokens": 10,
                "cache_creation_input_tokens": 1000,
                "cache_read_input_tokens": 0,
            }
        }
    )
    client = anthropic_client(gateway, api_key=key, max_retries=0)
    client.messages.create(
        model="claude-haiku-4-5", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    )
    [row] = admin.wait_logs(1, api_key=key)
    # Haiku 4.5 per million: input $1, output $5, 5-minute write $1.25
    assert row["spend"] == pytest.approx((10 * 1 + 10 * 5 + 1000 * 1.25) / 1e6, rel=1e-12)


def test_deployment_price_override(gateway, admin, key, upstream):
    upstream.script({"usage": {"input_tokens": 1000, "output_tokens": 500, "cache_read_input_tokens": 200}})
    client = anthropic_client(gateway, api_key=key, max_retries=0)
    client.messages.create(model="priced", max_tokens=600, messages=[{"role": "user", "content": "x"}])
    [row] = admin.wait_logs(1, api_key=key)
    # input_cost_per_token 1e-5, output 2e-5; cache reads default to the input rate
    assert row["spend"] == pytest.approx(1000 * 1e-5 + 500 * 2e-5 + 200 * 1e-5, rel=1e-12)


def _stream_and_drop(gateway, key, events: int) -> None:
    client = anthropic_client(gateway, api_key=key, max_retries=0)
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=2000, messages=[{"role": "user", "content": "tell me a story"}]
    ) as stream:
        for i, _ in enumerate(stream):
            if i >= events:
                break  # leaving the block closes the connection halfway


@pytest.mark.process
def test_stream_dropped_by_client_still_logs_spend(gateway, admin, key, upstream):
    story = "once upon a time " * 200
    upstream.script({"content": [{"type": "text", "text": story}], "chunk_delay": 0.02, "piece": 16})
    _stream_and_drop(gateway, key, events=20)
    [row] = admin.wait_logs(1, api_key=key)
    assert row["status"] == 499 and row["error_type"] == "client_disconnected"
    assert row["estimated"] is True
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert row["spend"] > 0
    deadline = time.monotonic() + 5
    while not any(e.get("stream_aborted") for e in upstream.events()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(e.get("stream_aborted") for e in upstream.events())  # upstream closed too


@pytest.mark.process
def test_stream_broken_by_upstream_still_logs_spend(gateway, admin, key, upstream):
    upstream.script(
        {"content": [{"type": "text", "text": "abc " * 300}], "disconnect_after": 12, "piece": 16}
    )
    client = anthropic_client(gateway, api_key=key, max_retries=0)
    with (
        pytest.raises(anthropic.APIError),
        client.messages.stream(
            model="claude-sonnet-4-5", max_tokens=2000, messages=[{"role": "user", "content": "go"}]
        ) as stream,
    ):
        for _ in stream:
            pass
    [row] = admin.wait_logs(1, api_key=key)
    assert row["estimated"] is True and row["spend"] > 0 and row["completion_tokens"] > 1


@pytest.mark.process
def test_cut_stream_is_billed_for_the_text_relayed_not_the_frames(gateway, admin, key, upstream):
    """Output of a broken stream is estimated from the text the client got (about 4 characters a
    token), not from the size of the JSON frames around it (that billed ~6x too much)."""
    upstream.script(
        {"content": [{"type": "text", "text": "abcd" * 400}], "disconnect_after": 14, "piece": 16}
    )
    client = anthropic_client(gateway, api_key=key, max_retries=0)
    received: list[str] = []
    with (
        pytest.raises(anthropic.APIError),
        client.messages.stream(
            model="claude-sonnet-4-5", max_tokens=2000, messages=[{"role": "user", "content": "go"}]
        ) as stream,
    ):
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                received.append(event.delta.text)
    relayed = len("".join(received))
    [row] = admin.wait_logs(1, api_key=key)
    assert relayed >= 100 and row["estimated"] is True
    assert relayed // 4 <= row["completion_tokens"] <= relayed // 4 + 4


@pytest.mark.process
def test_complete_stream_cost_matches_usage(gateway, admin, key, upstream):
    upstream.script(
        {
            "content": [{"type": "text", "text": "short answer"}],
            "usage": {"input_tokens": 40, "output_tokens": 7},
        }
    )
    client = anthropic_client(gateway, api_key=key, max_retries=0)
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "go"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens == 7
    [row] = admin.wait_logs(1, api_key=key)
    assert row["estimated"] is False and row["stream"] is True
    assert row["spend"] == pytest.approx((40 * 3 + 7 * 15) / 1e6, rel=1e-12)
