"""/v1/messages in front of an Anthropic-protocol upstream, driven by the official anthropic SDK.
The gateway runs in process; tests that stream use a `parley serve` process (marked `process`)."""

from __future__ import annotations

import anthropic
import orjson
import pytest

from keys_support import gateway_fixtures
from parley.testing.inprocess import anthropic_client, openai_client
from parley.testing.procs import anthropic_deployment

MASTER = "sk-parley-master-test"


def gateway_config(fake_upstream):
    return {
        "model_list": [
            anthropic_deployment("claude-sonnet-4-5", fake_upstream, model="claude-sonnet-4-5-20250929"),
            anthropic_deployment("same-name", fake_upstream),
            {"model_name": "parley-mock", "params": {"model": "mock/parley-mock"}},
        ],
        "general_settings": {"master_key": MASTER, "max_request_size_mb": 1},
    }


in_process, served, gateway = gateway_fixtures(gateway_config)


@pytest.fixture
def client(gateway):
    return anthropic_client(gateway, api_key=MASTER, max_retries=0)


def test_create_rewrites_model_and_swaps_key(client, upstream):
    message = client.messages.create(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "ping"}]
    )
    assert message.content[0].text == "Hello! You said: ping"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0
    assert message._request_id.startswith("req_")
    seen = upstream.requests()[-1]
    assert orjson.loads(seen["body"])["model"] == "claude-sonnet-4-5-20250929"
    assert seen["headers"]["x-api-key"] == "sk-ant-upstream-real"
    assert MASTER not in str(seen["headers"])
    assert seen["headers"]["anthropic-version"] == client.default_headers["anthropic-version"]


@pytest.mark.process
def test_stream_text(client, upstream):
    upstream.script({"content": [{"type": "text", "text": "streamed words arrive in pieces"}]})
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "go"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "streamed words arrive in pieces"
    assert len(pieces) > 1
    assert final.content[0].text == "streamed words arrive in pieces"
    assert final.usage.output_tokens > 0


def test_mock_model_answers_offline(client):
    message = client.messages.create(
        model="parley-mock", max_tokens=16, messages=[{"role": "user", "content": "anyone there?"}]
    )
    assert "anyone there?" in message.content[0].text


def test_wrong_key_is_authentication_error(gateway):
    bad = anthropic_client(gateway, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="parley-mock", max_tokens=8, messages=[{"role": "user", "content": "x"}])


WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.mark.process
def test_tool_use_turn_streamed_and_not(client, upstream):
    block = {"type": "tool_use", "name": "get_weather", "input": {"city": "Paris"}}
    upstream.script(
        {"content": [{"type": "text", "text": "Checking."}, block]},
        {"content": [{"type": "text", "text": "Checking."}, block]},
    )
    message = client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=64,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "weather?"}],
    )
    assert message.stop_reason == "tool_use"
    tool_use = message.content[1]
    assert (tool_use.type, tool_use.name, tool_use.input) == ("tool_use", "get_weather", {"city": "Paris"})
    with client.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=64,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "weather?"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[1].input == {"city": "Paris"}
    upstream.script({"content": [{"type": "text", "text": "18C and sunny"}]})
    answer = client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=64,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": final.content[1].id, "content": "18C sunny"}
                ],
            },
        ],
    )
    assert answer.content[0].text == "18C and sunny"
    sent = upstream.last_body()["messages"][2]["content"][0]
    assert sent == {"type": "tool_result", "tool_use_id": final.content[1].id, "content": "18C sunny"}


SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds+/8=" + "x" * 300


@pytest.mark.process
def test_thinking_signature_round_trips_byte_exact(client, upstream):
    thinking = {"type": "thinking", "thinking": "Let me think about élan and 🧠.", "signature": SIGNATURE}
    upstream.script({"content": [thinking, {"type": "text", "text": "Done."}]})
    with client.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "think"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "thinking"
    assert final.content[0].signature == SIGNATURE
    assert final.content[0].thinking == thinking["thinking"]
    client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[
            {"role": "user", "content": "think"},
            {"role": "assistant", "content": [thinking, {"type": "text", "text": "Done."}]},
            {"role": "user", "content": "again"},
        ],
    )
    raw = upstream.requests()[-1]["body"]
    assert SIGNATURE in raw
    assert upstream.last_body()["messages"][1]["content"][0] == thinking


def test_count_tokens_forwarded(client, upstream):
    result = client.messages.count_tokens(
        model="claude-sonnet-4-5",
        system="You are terse.",
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Hello, Claude"}],
    )
    assert result.input_tokens > 10
    seen = upstream.requests()[-1]
    assert seen["path"] == "/v1/messages/count_tokens"
    assert "max_tokens" not in orjson.loads(seen["body"])


def test_count_tokens_mock_counts_every_part(client):
    small = client.messages.count_tokens(model="parley-mock", messages=[{"role": "user", "content": "hi"}])
    big = client.messages.count_tokens(
        model="parley-mock",
        system="x" * 400,
        tools=[WEATHER_TOOL],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                    },
                ],
            }
        ],
    )
    assert big.input_tokens > small.input_tokens + 1600 + 100


def test_models_list_for_both_sdks(gateway, client):

    ids = [m.id for m in client.models.list()]
    assert ids == ["claude-sonnet-4-5", "same-name", "parley-mock"]
    assert client.models.retrieve("parley-mock").display_name == "parley-mock"
    oa = openai_client(gateway, api_key=MASTER, max_retries=0)
    assert [m.id for m in oa.models.list()] == ids
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("no-such-model")
