"""/v1/chat/completions over an Anthropic-protocol upstream, driven by the official openai SDK.
The gateway runs in process; tests that stream use a `parley serve` process (marked `process`)."""

from __future__ import annotations

import json

import openai
import orjson
import pytest

from keys_support import gateway_fixtures
from parley.testing.inprocess import openai_client
from parley.testing.procs import anthropic_deployment

MASTER = "sk-parley-master-test"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def gateway_config(fake_upstream):
    return {
        "model_list": [
            anthropic_deployment("claude-sonnet-4-5", fake_upstream, model="claude-sonnet-4-5-20250929"),
            {"model_name": "parley-mock", "params": {"model": "mock/parley-mock"}},
        ],
        "general_settings": {"master_key": MASTER},
        "router_settings": {"num_retries": 0, "allowed_fails": 1000},  # one failure, as it is
    }


in_process, served, gateway = gateway_fixtures(gateway_config)


@pytest.fixture
def client(gateway):
    return openai_client(gateway, api_key=MASTER, max_retries=0)


def test_plain_completion(client, upstream):
    completion = client.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "ping"}],
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Hello! You said: ping"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert (
        completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    seen = upstream.requests()[-1]
    assert seen["path"] == "/v1/messages"
    body = orjson.loads(seen["body"])
    assert body["model"] == "claude-sonnet-4-5-20250929"
    assert body["max_tokens"] == 4096
    assert body["system"] == "Be terse."
    assert body["messages"] == [{"role": "user", "content": "ping"}]
    assert seen["headers"]["x-api-key"] == "sk-ant-upstream-real"
    assert seen["headers"]["anthropic-version"] == "2023-06-01"
    assert MASTER not in str(seen["headers"])
    assert not any(k.startswith(("x-stainless", "openai-")) for k in seen["headers"])


def test_alias_path_and_max_completion_tokens(gateway, upstream):
    plain = openai_client(gateway, base_url=gateway.url, api_key=MASTER, max_retries=0)  # /chat/completions
    completion = plain.chat.completions.create(
        model="claude-sonnet-4-5",
        max_completion_tokens=77,
        temperature=0.3,
        top_p=0.9,
        messages=[{"role": "user", "content": "x"}],
    )
    assert completion.choices[0].message.content == "Hello! You said: x"
    body = upstream.last_body()
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (77, 0.3, 0.9)


@pytest.mark.process
def test_streamed_text_with_usage(client, upstream):
    upstream.script(
        {
            "content": [{"type": "text", "text": "streamed words arrive in several pieces"}],
            "usage": {"input_tokens": 11, "output_tokens": 7},
        }
    )
    chunks = list(
        client.chat.completions.create(
            model="claude-sonnet-4-5",
            messages=[{"role": "user", "content": "go"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == "streamed words arrive in several pieces"
    assert len(pieces) > 1
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["stop"]
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (11, 7)
    assert all(c.usage is None for c in chunks[:-1])
    assert upstream.last_body()["stream"] is True


@pytest.mark.process
def test_stream_helper_accumulates(client, upstream):
    upstream.script({"content": [{"type": "text", "text": "one two three"}]})
    with client.chat.completions.stream(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "go"}]
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "one two three"
    assert final.choices[0].finish_reason == "stop"


def test_forced_tool(client, upstream):
    upstream.script(
        {
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ]
        }
    )
    completion = client.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert (call.id, call.function.name) == ("toolu_1", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    body = upstream.last_body()
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": WEATHER["function"]["parameters"],
        }
    ]


@pytest.mark.parametrize(
    "choice,expected", [("auto", {"type": "auto"}), ("required", {"type": "any"}), ("none", {"type": "none"})]
)
def test_tool_choice_values(client, upstream, choice, expected):
    client.chat.completions.create(
        model="claude-sonnet-4-5",
        tools=[WEATHER],
        tool_choice=choice,
        messages=[{"role": "user", "content": "hi"}],
    )
    assert upstream.last_body()["tool_choice"] == expected


def test_parallel_tool_calls_and_results_sent_back(client, upstream):
    upstream.script(
        {
            "content": [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Rome"}},
            ]
        }
    )
    messages = [{"role": "user", "content": "weather in Paris and Rome?"}]
    first = client.chat.completions.create(
        model="claude-sonnet-4-5", messages=messages, tools=[WEATHER], parallel_tool_calls=False
    )
    assert upstream.last_body()["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    message = first.choices[0].message
    assert message.content == "Checking both."
    assert [c.id for c in message.tool_calls] == ["toolu_a", "toolu_b"]
    messages.append(message.model_dump(exclude_none=True))
    messages += [
        {"role": "tool", "tool_call_id": "toolu_a", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_b", "content": "24C"},
    ]
    client.chat.completions.create(model="claude-sonnet-4-5", messages=messages, tools=[WEATHER])
    sent = upstream.last_body()["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Checking both."},
            {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Rome"}},
        ],
    }
    assert sent[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_b", "content": "24C"},
        ],
    }
    assert len(sent) == 3


@pytest.mark.process
def test_streamed_parallel_tool_calls(client, upstream):
    upstream.script(
        {
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_a",
                    "name": "get_weather",
                    "input": {"city": "Paris, France"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_b",
                    "name": "get_weather",
                    "input": {"city": "Rome, Italy"},
                },
            ],
            "piece": 5,
        }
    )
    with client.chat.completions.stream(
        model="claude-sonnet-4-5", tools=[WEATHER], messages=[{"role": "user", "content": "both"}]
    ) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert [(c.id, json.loads(c.function.arguments)) for c in calls] == [
        ("toolu_a", {"city": "Paris, France"}),
        ("toolu_b", {"city": "Rome, Italy"}),
    ]
    assert final.choices[0].finish_reason == "tool_calls"


def test_prefill_stop_and_user(client, upstream):
    upstream.script(
        {
            "content": [{"type": "text", "text": " world"}],
            "stop_reason": "stop_sequence",
            "stop_sequence": "END",
        }
    )
    completion = client.chat.completions.create(
        model="claude-sonnet-4-5",
        stop=["END", "STOP"],
        user="user-42",
        messages=[{"role": "user", "content": "say hello world"}, {"role": "assistant", "content": "hello"}],
    )
    assert completion.choices[0].message.content == " world"
    assert completion.choices[0].finish_reason == "stop"
    body = upstream.last_body()
    assert body["messages"][-1] == {"role": "assistant", "content": "hello"}
    assert body["stop_sequences"] == ["END", "STOP"]
    assert body["metadata"] == {"user_id": "user-42"}


def test_max_tokens_finish_reason_is_length(client, upstream):
    upstream.script({"content": [{"type": "text", "text": "cut"}], "stop_reason": "max_tokens"})
    completion = client.chat.completions.create(
        model="claude-sonnet-4-5",
        max_tokens=1,
        stop="x",
        messages=[{"role": "user", "content": "long story"}],
    )
    assert completion.choices[0].finish_reason == "length"
    assert upstream.last_body()["stop_sequences"] == ["x"]


def test_developer_message_anywhere_goes_to_system(client, upstream):
    client.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[
            {"role": "user", "content": "a"},
            {"role": "developer", "content": "rule one"},
            {"role": "system", "content": [{"type": "text", "text": "rule two"}]},
        ],
    )
    body = upstream.last_body()
    assert body["system"] == "rule one\n\nrule two"
    assert body["messages"] == [{"role": "user", "content": "a"}]


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "status,exc",
    [
        (400, openai.BadRequestError),
        (403, openai.PermissionDeniedError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
    ],
)
def test_upstream_errors_raise_matching_sdk_exceptions(client, upstream, status, exc):
    upstream.script(
        {"status": status, "error": {"message": f"scripted {status}"}, "headers": {"retry-after": "7"}}
    )
    with pytest.raises(exc) as info:
        client.chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == status
    assert info.value.message == f"scripted {status}" or f"scripted {status}" in info.value.message
    assert info.value.body["message"] == f"scripted {status}"
    assert set(info.value.body) == {"message", "type", "param", "code"}
    if status == 429:
        assert info.value.body["type"] == "rate_limit_error"
        assert info.value.response.headers["retry-after"] == "7"


def test_overloaded_becomes_503_with_retry_after(client, upstream):
    upstream.script({"status": 529, "error": {"type": "overloaded_error", "message": "Overloaded"}})
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 503
    assert info.value.response.headers["retry-after"]
    assert info.value.body["message"] == "Overloaded"


def test_gateway_errors_use_openai_envelope(gateway, client):
    bad = openai_client(gateway, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as auth:
        bad.chat.completions.create(model="parley-mock", messages=[{"role": "user", "content": "x"}])
    assert auth.value.body["type"] == "authentication_error"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as n:
        client.chat.completions.create(
            model="claude-sonnet-4-5", n=2, messages=[{"role": "user", "content": "x"}]
        )
    assert n.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError) as missing:
        client.chat.completions.create(model="claude-sonnet-4-5", messages=[])
    assert missing.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as audio:
        client.chat.completions.create(
            model="claude-sonnet-4-5",
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}],
                }
            ],
        )
    assert "audio" in audio.value.message


@pytest.mark.process
def test_mid_stream_error_raises_api_error(client, upstream):
    upstream.script(
        {
            "content": [{"type": "text", "text": "partial answer that breaks"}],
            "error_after": 3,
            "stream_error": {"type": "overloaded_error", "message": "Overloaded"},
        }
    )
    stream = client.chat.completions.create(
        model="claude-sonnet-4-5", stream=True, messages=[{"role": "user", "content": "x"}]
    )
    with pytest.raises(openai.APIError) as info:
        for _ in stream:
            pass
    assert "Overloaded" in str(info.value)


# ------------------------------------------------------------------------------------ mock model


@pytest.mark.process
def test_mock_model_through_chat_completions(client):
    completion = client.chat.completions.create(
        model="parley-mock", messages=[{"role": "user", "content": "anyone there?"}]
    )
    assert "anyone there?" in completion.choices[0].message.content
    pieces = [
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="parley-mock", stream=True, messages=[{"role": "user", "content": "stream please"}]
        )
        if c.choices
    ]
    assert "stream please" in "".join(pieces)


def test_mock_model_forced_tool(client):
    completion = client.chat.completions.create(
        model="parley-mock",
        tools=[WEATHER],
        tool_choice="required",
        messages=[{"role": "user", "content": "x"}],
    )
    assert completion.choices[0].message.tool_calls[0].function.name == "get_weather"
