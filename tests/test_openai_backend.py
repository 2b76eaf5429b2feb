"""/v1/messages in front of an OpenAI-protocol upstream, driven by the official anthropic SDK.

The gateway translates both ways; the fake upstream speaks Chat Completions and records what it
received, so each test checks both what the client got and what the backend was sent.

The gateway runs in process; tests that stream use a `parley serve` process (marked `process`)."""

from __future__ import annotations

import anthropic
import orjson
import pytest

from keys_support import gateway_fixtures
from parley.testing.inprocess import anthropic_client
from parley.testing.procs import openai_deployment

MASTER = "sk-parley-master-test"
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TIME = {"name": "get_time", "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}}}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def vllm(name: str, upstream, **params) -> dict:
    return {
        "model_name": name,
        "params": {
            "model": f"hosted_vllm/{name}-upstream",
            "api_base": upstream.url + "/v1",
            "api_key": "sk-vllm",
            **params,
        },
    }


def gateway_config(fake_upstream):
    return {
        "model_list": [
            openai_deployment("gpt-test", fake_upstream, model="gpt-4o-2024"),
            vllm("qwen", fake_upstream, reasoning_field="reasoning"),
            vllm(
                "llama",
                fake_upstream,
                stream_include_usage=False,
                max_tokens_field="max_tokens",
                extra_body={"repetition_penalty": 1.1},
            ),
        ],
        "general_settings": {"master_key": MASTER},
        "router_settings": {"num_retries": 0},  # each error test sees one failure as it is
    }


in_process, served, gateway = gateway_fixtures(gateway_config)


@pytest.fixture
def client(gateway):
    return anthropic_client(gateway, api_key=MASTER, max_retries=0)


def sent(upstream, n: int = -1) -> dict:
    """The n-th Chat Completions body the upstream received."""
    bodies = [r for r in upstream.requests() if r["path"] == "/v1/chat/completions"]
    return orjson.loads(bodies[n]["body"])


def test_text_reply_usage_and_upstream_request(client, upstream):
    upstream.script(
        {
            "api": "openai",
            "content": "Bonjour!",
            "cached_tokens": 4,
            "usage": {"prompt_tokens": 30, "completion_tokens": 3},
        }
    )
    message = client.messages.create(
        model="gpt-test",
        max_tokens=50,
        system="Be terse.",
        extra_body={"temperature": 0.5},
        metadata={"user_id": "user-7"},
        messages=[{"role": "user", "content": "Say hello in French"}],
    )
    assert message.content[0].type == "text" and message.content[0].text == "Bonjour!"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.id.startswith("msg_") and message.model == "gpt-4o-2024"  # as the backend names it
    assert (
        message.usage.input_tokens,
        message.usage.cache_read_input_tokens,
        message.usage.output_tokens,
    ) == (26, 4, 3)
    request = upstream.requests()[-1]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer sk-openai-upstream-real"
    assert MASTER not in str(request["headers"])
    body = orjson.loads(request["body"])
    assert body["model"] == "gpt-4o-2024"
    assert body["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Say hello in French"},
    ]
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body
    assert body["temperature"] == 0.5 and body["user"] == "user-7"


@pytest.mark.process
def test_stream_text_get_final_message(client, upstream):
    upstream.script({"api": "openai", "content": "streamed words arrive in pieces", "piece": 5})
    with client.messages.stream(
        model="gpt-test", max_tokens=64, messages=[{"role": "user", "content": "go"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "streamed words arrive in pieces" and len(pieces) > 3
    assert final.content[0].text == "streamed words arrive in pieces"
    assert final.stop_reason == "end_turn"
    body = sent(upstream)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    # the fake's usage chunk: completion_tokens = ceil(31 chars / 4)
    assert final.usage.output_tokens == 8 and final.usage.input_tokens > 0


@pytest.mark.process
def test_stream_without_usage_is_estimated(client, upstream):
    upstream.script({"api": "openai", "content": "no usage from this server", "no_usage": True})
    with client.messages.stream(
        model="llama", max_tokens=64, messages=[{"role": "user", "content": "go"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "no usage from this server"
    assert final.usage.output_tokens == 7  # len/4 rounded up: the local estimate
    assert final.usage.input_tokens > 0
    body = sent(upstream)
    assert "stream_options" not in body and body["max_tokens"] == 64
    assert body["repetition_penalty"] == 1.1


@pytest.mark.parametrize("stream", [False, pytest.param(True, marks=pytest.mark.process)])
def test_tool_loop(client, upstream, stream):
    upstream.script(
        {
            "api": "openai",
            "tool_calls": [{"id": "call_abc123", "name": "get_weather", "arguments": {"city": "Paris"}}],
            "piece": 4,
        },
        {"api": "openai", "content": "It is sunny in Paris."},
    )
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = _create(client, stream, model="gpt-test", max_tokens=100, tools=[WEATHER], messages=messages)
    assert first.stop_reason == "tool_use"
    tool = first.content[-1]
    assert tool.type == "tool_use" and tool.name == "get_weather" and tool.input == {"city": "Paris"}
    assert tool.id == "toolu_call_abc123"
    messages += [
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "18C and sunny"}],
        },
    ]
    second = _create(client, stream, model="gpt-test", max_tokens=100, tools=[WEATHER], messages=messages)
    assert second.content[0].text == "It is sunny in Paris." and second.stop_reason == "end_turn"
    body = sent(upstream)
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": WEATHER["input_schema"],
            },
        }
    ]
    assistant, result = body["messages"][1], body["messages"][2]
    assert assistant["tool_calls"] == [
        {
            "id": tool.id,
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ]
    assert result == {"role": "tool", "tool_call_id": tool.id, "content": "18C and sunny"}


def _create(client, stream: bool, **kw):
    if not stream:
        return client.messages.create(**kw)
    with client.messages.stream(**kw) as s:
        return s.get_final_message()


@pytest.mark.process
@pytest.mark.parametrize("quirk", ["sequential", "interleave_tool_calls", "whole_tool_calls"])
def test_parallel_tool_calls_streamed(client, upstream, quirk):
    upstream.script(
        {
            "api": "openai",
            "content": "Checking both.",
            quirk: True,
            "piece": 3,
            "tool_calls": [
                {"name": "get_weather", "arguments": {"city": "Oslo"}},
                {"name": "get_time", "arguments": {"tz": "Europe/Oslo"}},
            ],
        }
    )
    with client.messages.stream(
        model="qwen",
        max_tokens=100,
        tools=[WEATHER, TIME],
        tool_choice={"type": "any", "disable_parallel_tool_use": False},
        messages=[{"role": "user", "content": "Weather and time?"}],
    ) as s:
        events = list(s)
        final = s.get_final_message()
    kinds = [b.type for b in final.content]
    assert kinds == ["text", "tool_use", "tool_use"]
    assert [(b.name, b.input) for b in final.content[1:]] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_time", {"tz": "Europe/Oslo"}),
    ]
    assert final.stop_reason == "tool_use"
    starts = [e for e in events if e.type == "content_block_start"]
    assert [e.index for e in starts] == [0, 1, 2]
    assert all(e.content_block.input == {} for e in starts if e.content_block.type == "tool_use")
    assert sent(upstream)["tool_choice"] == "required"


def test_parallel_calls_answered_in_order(client, upstream):
    upstream.script({"api": "openai", "content": "done"})
    client.messages.create(
        model="gpt-test",
        max_tokens=50,
        tools=[WEATHER, TIME],
        messages=[
            {"role": "user", "content": "both"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Rome"}},
                    {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "here you go"},
                    {"type": "tool_result", "tool_use_id": "toolu_a", "content": "warm"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_b",
                        "is_error": True,
                        "content": [
                            {"type": "text", "text": "clock broken"},
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                            },
                        ],
                    },
                ],
            },
        ],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    body = sent(upstream)
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["user", "assistant", "tool", "tool", "user"]
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "toolu_a", "content": "warm"}
    assert body["messages"][3]["content"].startswith("Error: clock broken")
    last = body["messages"][4]["content"]
    assert {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}} in last
    assert last[-1] == {"type": "text", "text": "here you go"}
    assert body["parallel_tool_calls"] is False


@pytest.mark.parametrize("field,model", [("reasoning_content", "gpt-test"), ("reasoning", "qwen")])
@pytest.mark.parametrize("stream", [False, pytest.param(True, marks=pytest.mark.process)])
def test_thinking(client, upstream, field, model, stream):
    upstream.script(
        {
            "api": "openai",
            "reasoning": "First, consider the question.",
            "reasoning_field": field,
            "content": "42",
        }
    )
    message = _create(
        client,
        stream,
        model=model,
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "meaning of life?"}],
    )
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "First, consider the question."
    assert message.content[1].text == "42"
    assert sent(upstream)["reasoning_effort"] == "low"


def test_thinking_history_goes_to_reasoning_field(client, upstream):
    upstream.script({"api": "openai", "content": "ok"})
    history = [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "pondering", "signature": ""},
                {"type": "text", "text": "a"},
            ],
        },
        {"role": "user", "content": "more"},
    ]
    client.messages.create(model="qwen", max_tokens=20, messages=history, output_config={"effort": "high"})
    body = sent(upstream)
    assert body["messages"][1] == {"role": "assistant", "content": "a", "reasoning": "pondering"}
    assert body["reasoning_effort"] == "high"
    client.messages.create(model="gpt-test", max_tokens=20, messages=history)
    assert sent(upstream)["messages"][1] == {"role": "assistant", "content": "a"}


@pytest.mark.parametrize("stream", [False, pytest.param(True, marks=pytest.mark.process)])
def test_stop_sequence_reported_by_server(client, upstream, stream):
    upstream.script({"api": "openai", "content": "one two", "stop_reason": "three"})
    message = _create(
        client,
        stream,
        model="qwen",
        max_tokens=20,
        stop_sequences=["three", "END"],
        messages=[{"role": "user", "content": "count"}],
    )
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "three"
    assert sent(upstream)["stop"] == ["three", "END"]


def test_max_tokens_and_refusal(client, upstream):
    upstream.script(
        {"api": "openai", "content": "cut o", "finish_reason": "length"},
        {"api": "openai", "content": None, "refusal": "I can't help with that."},
    )
    assert (
        client.messages.create(
            model="gpt-test", max_tokens=2, messages=[{"role": "user", "content": "long"}]
        ).stop_reason
        == "max_tokens"
    )
    refused = client.messages.create(
        model="gpt-test", max_tokens=20, messages=[{"role": "user", "content": "bad"}]
    )
    assert refused.stop_reason == "refusal"
    assert refused.content[0].text == "I can't help with that."


def test_images_and_documents(client, upstream):
    upstream.script({"api": "openai", "content": "a dot"}, {"api": "openai", "content": "read"})
    client.messages.create(
        model="qwen",
        max_tokens=20,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
                    {
                        "type": "document",
                        "title": "Notes",
                        "source": {"type": "text", "media_type": "text/plain", "data": "plain notes"},
                    },
                    {"type": "text", "text": "Describe", "cache_control": {"type": "ephemeral"}},
                ],
            }
        ],
    )
    parts = sent(upstream)["messages"][0]["content"]
    assert parts == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
        {"type": "text", "text": "Notes\n\nplain notes"},
        {"type": "text", "text": "Describe"},
    ]
    pdf = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"},
    }
    client.messages.create(
        model="gpt-test",
        max_tokens=20,
        messages=[{"role": "user", "content": [pdf, {"type": "text", "text": "Summarize"}]}],
    )
    assert sent(upstream)["messages"][0]["content"][0] == {
        "type": "file",
        "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQK"},
    }
    with pytest.raises(anthropic.BadRequestError, match="PDF documents are not supported"):
        client.messages.create(model="qwen", max_tokens=20, messages=[{"role": "user", "content": [pdf]}])


def test_hints_dropped_and_listed(client, upstream):
    upstream.script({"api": "openai", "content": "fine"})
    raw = client.messages.with_raw_response.create(
        model="gpt-test",
        max_tokens=20,
        messages=[{"role": "user", "content": "hi"}],
        tools=[WEATHER, {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
        extra_body={"context_management": {"edits": []}, "mcp_servers": [], "top_k": 5},
        extra_headers={"anthropic-beta": "context-management-2025-06-27"},
    )
    assert raw.parse().content[0].text == "fine"
    dropped = raw.headers["x-parley-dropped"].split(",")
    assert {"context_management", "mcp_servers", "top_k", "tools.web_search", "anthropic-beta"} <= set(
        dropped
    )
    body = sent(upstream)
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather"]
    assert "top_k" not in body and "context_management" not in body


def test_server_tool_relied_on_is_a_clear_400(client, upstream):
    with pytest.raises(anthropic.BadRequestError, match="web_search"):
        client.messages.create(
            model="gpt-test",
            max_tokens=20,
            messages=[{"role": "user", "content": "search the news"}],
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
        )
    with pytest.raises(anthropic.BadRequestError, match="code_execution"):
        client.messages.create(
            model="gpt-test",
            max_tokens=20,
            tools=[WEATHER, {"type": "code_execution_20250825", "name": "code_execution"}],
            tool_choice={"type": "tool", "name": "code_execution"},
            messages=[{"role": "user", "content": "run it"}],
        )
    assert not [r for r in upstream.requests() if r["path"] == "/v1/chat/completions"]


def test_unknown_field_is_rejected_like_anthropic(client):
    with pytest.raises(anthropic.BadRequestError, match="bogus: Extra inputs are not permitted"):
        client.messages.create(
            model="gpt-test",
            max_tokens=5,
            extra_body={"bogus": 1},
            messages=[{"role": "user", "content": "x"}],
        )


@pytest.mark.parametrize(
    "status,error_body,exc,needle",
    [
        (
            400,
            {
                "error": {
                    "message": "Invalid 'messages[0]'",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": None,
                }
            },
            anthropic.BadRequestError,
            "Invalid 'messages",
        ),
        (
            400,
            {
                "error": {
                    "message": "This model's maximum context length is 8192 tokens.",
                    "type": "invalid_request_error",
                    "code": "context_length_exceeded",
                }
            },
            anthropic.BadRequestError,
            "prompt is too long: This model's maximum context length",
        ),
        (
            401,
            {
                "error": {
                    "message": "Incorrect API key provided",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
            anthropic.AuthenticationError,
            "Incorrect API key",
        ),
        (404, {"error": "model 'llama9' not found"}, anthropic.NotFoundError, "llama9"),
        (
            429,
            {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
            anthropic.RateLimitError,
            "Rate limit reached",
        ),
        (
            500,
            {"object": "error", "message": "engine crashed", "type": "InternalServerError", "code": 500},
            anthropic.InternalServerError,
            "engine crashed",
        ),
        (
            503,
            {"error": {"message": "overloaded", "type": "server_error"}},
            anthropic.OverloadedError,
            "overloaded",
        ),
    ],
)
def test_upstream_errors_become_sdk_exceptions(client, upstream, status, error_body, exc, needle):
    upstream.script(
        {"api": "openai", "status": status, "error_body": error_body, "headers": {"retry-after": "7"}}
    )
    with pytest.raises(exc, match=needle) as info:
        client.messages.create(model="gpt-test", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert info.value.body["type"] == "error"
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.response.headers["request-id"].startswith("req_")


@pytest.mark.process
def test_mid_stream_error_event(client, upstream):
    upstream.script(
        {
            "api": "openai",
            "content": "partial answer that breaks",
            "piece": 4,
            "error_after": 3,
            "stream_error": {"message": "Rate limited mid-stream", "type": "rate_limit_exceeded"},
        }
    )
    with (
        pytest.raises(anthropic.APIStatusError, match="Rate limited mid-stream") as info,
        client.messages.stream(
            model="gpt-test", max_tokens=50, messages=[{"role": "user", "content": "x"}]
        ) as s,
    ):
        list(s)
    assert info.value.body["error"]["type"] == "rate_limit_error"


@pytest.mark.process
def test_truncated_stream_is_an_error_not_a_success(client, upstream):
    upstream.script({"api": "openai", "content": "cut short here", "piece": 3, "disconnect_after": 3})
    with (
        pytest.raises(anthropic.APIError),
        client.messages.stream(
            model="gpt-test", max_tokens=50, messages=[{"role": "user", "content": "x"}]
        ) as s,
    ):
        list(s)


@pytest.mark.parametrize("stream", [False, pytest.param(True, marks=pytest.mark.process)])
def test_invalid_tool_arguments_do_not_crash(client, upstream, stream):
    upstream.script(
        {"api": "openai", "tool_calls": [{"name": "get_weather", "arguments": "{\"city\": 'Paris'}"}]}
    )
    message = _create(
        client,
        stream,
        model="gpt-test",
        max_tokens=50,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "x"}],
    )
    assert message.stop_reason == "tool_use"
    assert message.content[0].name == "get_weather" and isinstance(message.content[0].input, dict)


def test_count_tokens_is_a_local_estimate(client, upstream):
    count = client.messages.count_tokens(
        model="gpt-test", messages=[{"role": "user", "content": "How many tokens is this?"}], tools=[WEATHER]
    )
    assert 15 < count.input_tokens < 200
    assert not upstream.requests()


@pytest.mark.process
def test_client_disconnect_cancels_upstream(gateway, upstream):
    import http.client
    import time

    upstream.script({"api": "openai", "content": "word " * 200, "piece": 5, "chunk_delay": 0.05})
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    conn.request(
        "POST",
        "/v1/messages",
        body=orjson.dumps(
            {
                "model": "gpt-test",
                "max_tokens": 500,
                "stream": True,
                "messages": [{"role": "user", "content": "talk"}],
            }
        ),
        headers={"x-api-key": MASTER, "anthropic-version": "2023-06-01", "content-type": "application/json"},
    )
    response = conn.getresponse()
    assert response.status == 200
    assert b"event: message_start" in response.read1(4096)
    conn.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not upstream.events():
        time.sleep(0.05)
    assert upstream.events() and upstream.events()[0].get("stream_aborted"), upstream.events()
