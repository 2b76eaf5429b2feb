"""`parley.completion` / `acompletion`: OpenAI Chat Completions in process, to both provider kinds."""

from __future__ import annotations

import openai
import pytest

import parley
from parley import errors

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def ask(model: str, **kw):
    return dict(model=model, messages=[{"role": "user", "content": "hello completion"}], max_tokens=64, **kw)


async def test_anthropic_model_gets_translated_and_validates(upstream):
    upstream.script({"api": "anthropic", "usage": {"input_tokens": 1000, "output_tokens": 100}})
    result = await parley.acompletion(
        **ask("anthropic/claude-sonnet-4-5"), api_key="k", api_base=upstream.url
    )
    completion = openai.types.chat.ChatCompletion.model_validate(result)
    assert completion.choices[0].message.content == "Hello! You said: hello completion"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (1000, 100)
    assert result.cost == pytest.approx((1000 * 3 + 100 * 15) / 1e6)  # Sonnet 4.5 list prices
    assert upstream.requests()[-1]["path"] == "/v1/messages"


def test_sync_tools_and_thinking_from_anthropic(upstream):
    upstream.script(
        {
            "api": "anthropic",
            "content": [
                {"type": "thinking", "thinking": "Need the tool.", "signature": "sig-9"},
                {"type": "tool_use", "name": "get_weather", "input": {"city": "Oslo"}},
            ],
        }
    )
    result = parley.completion(
        **ask("anthropic/claude-sonnet-4-5", tools=[WEATHER]), api_key="k", api_base=upstream.url
    )
    message = result.choices[0].message
    assert result.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls[0].function.name == "get_weather"
    assert message.tool_calls[0].function.arguments == '{"city":"Oslo"}'
    assert message.reasoning_content == "Need the tool."
    assert message.thinking_blocks[0]["signature"] == "sig-9"


async def test_openai_model_native_and_streamed(upstream):
    upstream.script(
        {"api": "openai", "content": "native text"}, {"api": "openai", "content": "streamed native text"}
    )
    result = await parley.acompletion(
        **ask("openai/gpt-4o-mini"), api_key="sk-oa", api_base=upstream.url + "/v1"
    )
    assert openai.types.chat.ChatCompletion.model_validate(result).choices[0].message.content == "native text"
    assert upstream.requests()[-1]["headers"]["authorization"] == "Bearer sk-oa"
    chunks = await parley.acompletion(
        **ask("openai/gpt-4o-mini", stream=True), api_key="sk-oa", api_base=upstream.url + "/v1"
    )
    parts = []
    async for chunk in chunks:
        openai.types.chat.ChatCompletionChunk.model_validate(chunk)
        parts.extend(c.delta.get("content") or "" for c in chunk.choices)
    assert "".join(parts) == "streamed native text"


def test_sync_stream_from_anthropic(upstream):
    upstream.script({"api": "anthropic", "content": [{"type": "text", "text": "pieces of a reply"}]})
    text = "".join(
        c.choices[0].delta.get("content") or ""
        for c in parley.completion(
            **ask("anthropic/claude-x", stream=True), api_key="k", api_base=upstream.url
        )
        if c.choices
    )
    assert text == "pieces of a reply"


@pytest.mark.parametrize(
    "api, status, exc",
    [
        ("anthropic", 429, errors.RateLimitError),
        ("anthropic", 401, errors.AuthenticationError),
        ("openai", 400, errors.BadRequestError),
        ("openai", 500, errors.InternalServerError),
    ],
)
async def test_errors_are_typed(upstream, api, status, exc):
    upstream.script({"api": api, "status": status, "error": {"message": f"scripted {status}"}})
    model, base = (
        ("anthropic/claude-x", upstream.url) if api == "anthropic" else ("openai/gpt-x", upstream.url + "/v1")
    )
    with pytest.raises(exc) as info:
        await parley.acompletion(**ask(model), api_key="k", api_base=base, num_retries=0)
    assert info.value.status_code == status and f"scripted {status}" in info.value.message


async def test_router_falls_back_across_protocols(upstream):
    router = parley.Router(
        {
            "model_list": [
                {
                    "model_name": "main",
                    "params": {
                        "model": "anthropic/claude-sonnet-4-5",
                        "api_key": "k",
                        "api_base": upstream.url,
                    },
                },
                {
                    "model_name": "backup",
                    "params": {
                        "model": "openai/gpt-4o-mini",
                        "api_key": "k",
                        "api_base": upstream.url + "/v1",
                    },
                },
            ],
            "router_settings": {"num_retries": 0, "fallbacks": [{"main": ["backup"]}]},
        }
    )
    upstream.script(
        {"api": "anthropic", "status": 529, "error": {"message": "Overloaded"}},
        {"api": "openai", "content": "from the backup"},
        {"api": "anthropic", "status": 529, "error": {"message": "Overloaded"}},
        {"api": "openai", "content": "backup via messages"},
    )
    try:
        result = await router.acompletion(**ask("main"))
        assert result.choices[0].message.content == "from the backup"
        message = await router.messages.acreate(**ask("main"))
        assert message.content[0].text == "backup via messages"
        assert [r["path"] for r in upstream.requests()] == ["/v1/messages", "/v1/chat/completions"] * 2
    finally:
        await router.aclose()
