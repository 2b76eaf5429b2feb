"""Streams fail over only before their first byte reached the client."""

from __future__ import annotations

import time

import anthropic
import pytest

from parley.testing.procs import anthropic_deployment

MODEL = "claude-sonnet-4-5"
TEXT = "a streamed answer long enough to come in several pieces"


@pytest.fixture(scope="module")
def gateway(start_gateway, fake_upstream, fake_upstream_b):
    return start_gateway(
        {
            "model_list": [
                anthropic_deployment(
                    MODEL, fake_upstream, model="a-model", weight=1_000_000, first_byte_timeout=1.0
                ),
                anthropic_deployment(MODEL, fake_upstream_b, model="b-model", weight=1),
            ],
            "router_settings": {"num_retries": 2, "allowed_fails": 100},
        }
    )


@pytest.fixture
def client(gateway):
    return anthropic.Anthropic(base_url=gateway.url, api_key="sk-test", max_retries=0)


def stream(client):
    return client.messages.stream(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "go"}])


def test_stream_dying_before_first_byte_fails_over(client, upstream, b):
    upstream.script({"disconnect_after": 0})
    b.script({"content": [{"type": "text", "text": TEXT}]})
    with stream(client) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
        headers = s.response.headers
    assert text == TEXT
    assert final.stop_reason == "end_turn"
    assert headers["x-parley-deployment"] == f"{MODEL}#1"
    assert headers["x-parley-attempts"] == "2"
    assert len(upstream.requests()) == 1 and len(b.requests()) == 1


def test_stream_opening_with_overloaded_error_fails_over(client, upstream, b):
    upstream.script({"error_after": 0, "stream_error": {"type": "overloaded_error", "message": "Overloaded"}})
    b.script({"content": [{"type": "text", "text": TEXT}]})
    with stream(client) as s:
        assert "".join(s.text_stream) == TEXT
        assert s.response.headers["x-parley-deployment"] == f"{MODEL}#1"


def test_stream_silent_past_first_byte_timeout_fails_over(client, upstream, b):
    upstream.script({"delay": 3})
    started = time.monotonic()
    with stream(client) as s:
        assert "".join(s.text_stream) == "Hello! You said: go"
        assert s.response.headers["x-parley-deployment"] == f"{MODEL}#1"
    assert time.monotonic() - started < 2.5


def test_stream_dying_after_first_byte_is_not_retried(client, upstream, b):
    upstream.script({"content": [{"type": "text", "text": TEXT}], "disconnect_after": 3})
    received = []
    with pytest.raises(anthropic.APIError), stream(client) as s:
        for text in s.text_stream:
            received.append(text)
    assert received  # the client saw part of the answer from the first deployment
    assert TEXT.startswith("".join(received)) and "".join(received) != TEXT
    assert b.requests() == []
    assert any(e.get("disconnected_by_fake") for e in upstream.events())
