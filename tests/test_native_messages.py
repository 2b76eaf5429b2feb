"""/v1/messages in front of an Anthropic-protocol upstream, driven by the official anthropic SDK."""

from __future__ import annotations

import anthropic
import orjson
import pytest

from parley.testing.procs import anthropic_deployment

MASTER = "sk-parley-master-test"


@pytest.fixture(scope="module")
def gateway(start_gateway, fake_upstream):
    return start_gateway({
        "model_list": [
            anthropic_deployment("claude-sonnet-4-5", fake_upstream, model="claude-sonnet-4-5-20250929"),
            anthropic_deployment("same-name", fake_upstream),
            {"model_name": "parley-mock", "params": {"model": "mock/parley-mock"}},
        ],
        "general_settings": {"master_key": MASTER, "max_request_size_mb": 1},
    })


@pytest.fixture
def client(gateway):
    return anthropic.Anthropic(base_url=gateway.url, api_key=MASTER, max_retries=0)


def test_create_rewrites_model_and_swaps_key(client, upstream):
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=64,
                                     messages=[{"role": "user", "content": "ping"}])
    assert message.content[0].text == "Hello! You said: ping"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0
    assert message._request_id.startswith("req_")
    seen = upstream.requests()[-1]
    assert orjson.loads(seen["body"])["model"] == "claude-sonnet-4-5-20250929"
    assert seen["headers"]["x-api-key"] == "sk-ant-upstream-real"
    assert MASTER not in str(seen["headers"])
    assert seen["headers"]["anthropic-version"] == client.default_headers["anthropic-version"]


def test_stream_text(client, upstream):
    upstream.script({"content": [{"type": "text", "text": "streamed words arrive in pieces"}]})
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64,
                                messages=[{"role": "user", "content": "go"}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "streamed words arrive in pieces"
    assert len(pieces) > 1
    assert final.content[0].text == "streamed words arrive in pieces"
    assert final.usage.output_tokens > 0


def test_mock_model_answers_offline(client):
    message = client.messages.create(model="parley-mock", max_tokens=16,
                                     messages=[{"role": "user", "content": "anyone there?"}])
    assert "anyone there?" in message.content[0].text


def test_wrong_key_is_authentication_error(gateway):
    bad = anthropic.Anthropic(base_url=gateway.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="parley-mock", max_tokens=8, messages=[{"role": "user", "content": "x"}])
