"""/v1/chat/completions -> Anthropic: vision, PDFs, caching, thinking, structured output, citations.
The gateway runs in process; tests that stream use a `parley serve` process (marked `process`)."""

from __future__ import annotations

import json

import openai
import pydantic
import pytest

from keys_support import gateway_fixtures
from parley.testing.inprocess import openai_client
from parley.testing.procs import anthropic_deployment

MASTER = "sk-parley-master-features"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
PDF = "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PD4+CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK"


def gateway_config(fake_upstream):
    return {
        "model_list": [
            anthropic_deployment("claude-sonnet-4-5", fake_upstream, model="claude-sonnet-4-5-20250929"),
            anthropic_deployment("claude-old", fake_upstream, model="claude-3-5-haiku-20241022"),
        ],
        "general_settings": {"master_key": MASTER},
        "router_settings": {"num_retries": 0, "allowed_fails": 1000},  # one failure, as it is
    }


in_process, served, gateway = gateway_fixtures(gateway_config)


@pytest.fixture
def client(gateway):
    return openai_client(gateway, api_key=MASTER, max_retries=0)


def user_blocks(upstream) -> list[dict]:
    return upstream.last_body()["messages"][0]["content"]


def test_vision_data_url_and_http_url(client, upstream):
    client.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is in these?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"},
                    },
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            }
        ],
    )
    assert user_blocks(upstream) == [
        {"type": "text", "text": "what is in these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_pdf_as_file_part_and_image_url(client, upstream):
    client.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "file",
                        "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "spec.pdf"},
                    },
                    {"type": "image_url", "image_url": {"url": f"data:application/pdf;base64,{PDF}"}},
                    {"type": "text", "text": "summarise"},
                ],
            }
        ],
    )
    pdf_source = {"type": "base64", "media_type": "application/pdf", "data": PDF}
    assert user_blocks(upstream) == [
        {"type": "document", "source": pdf_source, "title": "spec.pdf"},
        {"type": "document", "source": pdf_source},
        {"type": "text", "text": "summarise"},
    ]


def test_bad_image_url_is_400(client, upstream):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="claude-sonnet-4-5",
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:audio/wav;base64,AAAA"}}],
                }
            ],
        )
    assert info.value.body["param"] == "messages[0].content[0]"
    assert upstream.requests() == []


def test_prompt_caching_fields_reach_upstream_and_cached_tokens_come_back(client, upstream):
    upstream.script(
        {
            "content": [{"type": "text", "text": "ok"}],
            "usage": {
                "input_tokens": 5,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 20,
                "output_tokens": 3,
            },
        }
    )
    ephemeral = {"type": "ephemeral"}
    completion = client.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[
            {
                "role": "system",
                "content": [{"type": "text", "text": "long system prompt", "cache_control": ephemeral}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": "long document",
                        "cache_control": {"type": "ephemeral", "ttl": "1h"},
                    },
                    {"type": "text", "text": "question"},
                ],
            },
        ],
        tools=[
            {
                "type": "function",
                "cache_control": ephemeral,
                "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
            }
        ],
    )
    body = upstream.last_body()
    assert body["system"] == [{"type": "text", "text": "long system prompt", "cache_control": ephemeral}]
    assert body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert "cache_control" not in body["messages"][0]["content"][1]
    assert body["tools"][0]["cache_control"] == ephemeral
    usage = completion.usage
    assert usage.prompt_tokens == 125
    assert usage.prompt_tokens_details.cached_tokens == 100
    assert usage.model_extra["cache_creation_input_tokens"] == 20
    assert usage.model_extra["cache_read_input_tokens"] == 100
    assert usage.total_tokens == 128


THINKING_REPLY = {
    "content": [
        {"type": "thinking", "thinking": "The user wants a number. 6*7 is 42.", "signature": "EqQBsig+/=="},
        {"type": "text", "text": "42"},
    ]
}


def test_thinking_round_trip(client, upstream):
    upstream.script(THINKING_REPLY)
    messages = [{"role": "user", "content": "6*7?"}]
    first = client.chat.completions.create(
        model="claude-sonnet-4-5", messages=messages, reasoning_effort="high"
    )
    body = upstream.last_body()
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert body["max_tokens"] > 4096
    message = first.choices[0].message
    assert message.content == "42"
    assert message.reasoning_content == "The user wants a number. 6*7 is 42."
    assert message.thinking_blocks == [
        {"type": "thinking", "thinking": "The user wants a number. 6*7 is 42.", "signature": "EqQBsig+/=="}
    ]
    messages += [message.model_dump(exclude_none=True), {"role": "user", "content": "and 6*8?"}]
    client.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=messages,
        extra_body={"thinking": {"type": "enabled", "budget_tokens": 2000}},
    )
    body = upstream.last_body()
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2000}
    assert body["messages"][1] == {"role": "assistant", "content": THINKING_REPLY["content"]}


@pytest.mark.process
def test_streamed_thinking_round_trip(client, upstream):
    upstream.script(dict(THINKING_REPLY, piece=6))
    messages = [{"role": "user", "content": "6*7?"}]
    with client.chat.completions.stream(
        model="claude-sonnet-4-5", messages=messages, reasoning_effort="low"
    ) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.reasoning_content == "The user wants a number. 6*7 is 42."
    assert [(b["type"], b["signature"]) for b in message.thinking_blocks] == [("thinking", "EqQBsig+/==")]
    messages += [message.model_dump(exclude_none=True), {"role": "user", "content": "more"}]
    client.chat.completions.create(model="claude-sonnet-4-5", messages=messages)
    assert upstream.last_body()["messages"][1]["content"] == THINKING_REPLY["content"]


class Answer(pydantic.BaseModel):
    city: str
    population: int


def test_json_schema_uses_output_config_on_new_models(client, upstream):
    upstream.script({"content": [{"type": "text", "text": '{"city": "Paris", "population": 2100000}'}]})
    completion = client.chat.completions.parse(
        model="claude-sonnet-4-5",
        response_format=Answer,
        messages=[{"role": "user", "content": "biggest French city"}],
    )
    assert completion.choices[0].message.parsed == Answer(city="Paris", population=2100000)
    body = upstream.last_body()
    assert body["output_config"]["format"]["type"] == "json_schema"
    assert body["output_config"]["format"]["schema"]["properties"]["city"] == {
        "title": "City",
        "type": "string",
    }
    assert "tools" not in body


def test_json_schema_uses_forced_tool_on_older_models(client, upstream):
    upstream.script(
        {
            "content": [
                {"type": "tool_use", "name": "Answer", "input": {"city": "Rome", "population": 2800000}}
            ]
        }
    )
    completion = client.chat.completions.parse(
        model="claude-old",
        response_format=Answer,
        messages=[{"role": "user", "content": "biggest Italian city"}],
    )
    choice = completion.choices[0]
    assert choice.message.parsed == Answer(city="Rome", population=2800000)
    assert choice.message.tool_calls in (None, [])
    assert choice.finish_reason == "stop"
    body = upstream.last_body()
    assert body["tool_choice"] == {"type": "tool", "name": "Answer"}
    assert body["tools"][0]["name"] == "Answer"
    assert "output_config" not in body


@pytest.mark.process
def test_json_object_streamed_through_forced_tool(client, upstream):
    upstream.script(
        {"content": [{"type": "tool_use", "name": "json_output", "input": {"ok": True, "n": 3}}], "piece": 4}
    )
    chunks = list(
        client.chat.completions.create(
            model="claude-sonnet-4-5",
            stream=True,
            response_format={"type": "json_object"},
            messages=[{"role": "user", "content": "json please"}],
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert json.loads(text) == {"ok": True, "n": 3}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)


def test_citations_pass_through_and_come_back(client, upstream):
    citation = {
        "type": "char_location",
        "cited_text": "The sky is blue.",
        "document_index": 0,
        "document_title": "Facts",
        "start_char_index": 0,
        "end_char_index": 16,
    }
    upstream.script({"content": [{"type": "text", "text": "It is blue.", "citations": [citation]}]})
    document = {
        "type": "document",
        "title": "Facts",
        "citations": {"enabled": True},
        "source": {"type": "text", "media_type": "text/plain", "data": "The sky is blue."},
    }
    completion = client.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[
            {"role": "user", "content": [document, {"type": "text", "text": "What colour is the sky?"}]}
        ],
    )
    assert user_blocks(upstream)[0] == document
    message = completion.choices[0].message
    assert message.content == "It is blue."
    assert message.provider_specific_fields == {"citations": [citation]}


def test_headers_and_betas_forwarded(client, upstream):
    computer = {
        "type": "computer_20241022",
        "function": {
            "name": "computer",
            "parameters": {"display_width_px": 1024, "display_height_px": 768, "display_number": 1},
        },
    }
    client.chat.completions.create(
        model="claude-sonnet-4-5",
        tools=[computer],
        messages=[{"role": "user", "content": "take a screenshot"}],
        extra_headers={"anthropic-beta": "files-api-2025-04-14", "x-team-trace": "t-1"},
    )
    seen = upstream.requests()[-1]
    assert seen["headers"]["anthropic-beta"] == "files-api-2025-04-14,computer-use-2024-10-22"
    assert seen["headers"]["x-team-trace"] == "t-1"
    assert orjson_loads(seen["body"])["tools"] == [
        {
            "type": "computer_20241022",
            "name": "computer",
            "display_width_px": 1024,
            "display_height_px": 768,
            "display_number": 1,
        }
    ]


def test_dropped_fields_are_reported(client, upstream):
    raw = client.chat.completions.with_raw_response.create(
        model="claude-sonnet-4-5", seed=4, frequency_penalty=0.5, messages=[{"role": "user", "content": "x"}]
    )
    assert raw.headers["x-parley-dropped"] == "frequency_penalty,seed"
    body = upstream.last_body()
    assert "seed" not in body and "frequency_penalty" not in body


def orjson_loads(text: str):
    return json.loads(text)
