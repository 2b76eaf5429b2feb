"""Anthropic -> OpenAI request translation: unit cases and a hypothesis property.

Property: any valid Anthropic Messages request becomes a Chat Completions request that the
`openai` package's own request types accept, and that OpenAI's message-order rules (as the fake
upstream enforces them) accept too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat.completion_create_params import (
    CompletionCreateParamsNonStreaming,
    CompletionCreateParamsStreaming,
)
from pydantic import TypeAdapter

from fuzz_support import examples
from parley.config import ConfigError
from parley.core.errors import GatewayError
from parley.testing.fake_openai import check_request
from parley.translate.anthropic_to_openai import to_openai_request
from parley.translate.openai_options import OpenAIOptions, options_from_params

NON_STREAMING = TypeAdapter(CompletionCreateParamsNonStreaming)
STREAMING = TypeAdapter(CompletionCreateParamsStreaming)
OPTIONS = [
    OpenAIOptions(),
    options_from_params("openai", {}),
    options_from_params("hosted_vllm", {"reasoning_field": "reasoning_content"}),
]


def consume(value):
    """Walk a validated value so pydantic's lazy Iterable validators actually run."""
    if isinstance(value, dict):
        return {k: consume(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, Iterator)) or (
        hasattr(value, "__iter__") and not isinstance(value, (str, bytes))
    ):
        return [consume(v) for v in value]
    return value


def validate(body: dict) -> dict:
    adapter = STREAMING if body.get("stream") else NON_STREAMING
    return consume(adapter.validate_python(body))


# ----------------------------------------------------------------------------- strategies

text = st.text(min_size=1, max_size=30)
ident = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ident, inner, max_size=3),
    max_leaves=6,
)
image = st.builds(
    lambda data: {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
    st.from_regex(r"[A-Za-z0-9+/]{4,20}", fullmatch=True),
) | st.builds(lambda u: {"type": "image", "source": {"type": "url", "url": "https://x.test/" + u}}, ident)
text_block = st.builds(
    lambda t, cached: {
        "type": "text",
        "text": t,
        **({"cache_control": {"type": "ephemeral"}} if cached else {}),
    },
    text,
    st.booleans(),
)
document = st.builds(
    lambda t, title: {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": t},
        **({"title": title} if title else {}),
    },
    text,
    st.none() | text,
)
user_block = text_block | image | document


@st.composite
def conversation(draw) -> list[dict]:
    messages: list[dict] = []
    pending: list[str] = []
    tool_ids = iter(f"toolu_{i:04d}" for i in range(1000))
    for turn in range(draw(st.integers(1, 4))):
        user: list[dict] = [
            {
                "type": "tool_result",
                "tool_use_id": tid,
                "is_error": draw(st.booleans()),
                "content": draw(st.one_of(text, st.lists(text_block | image, max_size=2))),
            }
            for tid in pending
        ]
        user += draw(st.lists(user_block, min_size=0 if user else 1, max_size=3))
        draw(st.randoms()).shuffle(user)  # tool results may come after text: still valid input
        messages.append({"role": "user", "content": user if user or pending else "hi"})
        if draw(st.booleans()):
            messages.append({"role": "system", "content": draw(text)})
        if turn == 3 or not draw(st.booleans()):
            pending = []
            continue
        blocks: list[dict] = []
        if draw(st.booleans()):
            blocks.append({"type": "thinking", "thinking": draw(text), "signature": "sig"})
        if draw(st.booleans()):
            blocks.append({"type": "text", "text": draw(text)})
        calls = [
            {
                "type": "tool_use",
                "id": next(tool_ids),
                "name": draw(ident),
                "input": draw(st.dictionaries(ident, json_value, max_size=3)),
            }
            for _ in range(draw(st.integers(0, 2)))
        ]
        pending = [c["id"] for c in calls]
        messages.append({"role": "assistant", "content": blocks + calls or draw(text)})
    if pending:
        messages.append(
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tid, "content": "ok"} for tid in pending],
            }
        )
    return messages


@st.composite
def request(draw) -> dict:
    body: dict = {
        "model": "claude-x",
        "max_tokens": draw(st.integers(1, 8192)),
        "messages": draw(conversation()),
    }
    if draw(st.booleans()):
        body["system"] = draw(text | st.lists(text_block, min_size=1, max_size=3))
    tools = draw(
        st.lists(
            st.builds(
                lambda n, d: {
                    "name": n,
                    "input_schema": {"type": "object", "properties": {"x": {"type": "string"}}},
                    **({"description": d} if d else {}),
                },
                ident,
                st.none() | text,
            ),
            max_size=3,
            unique_by=lambda t: t["name"],
        )
    )
    if tools:
        body["tools"] = tools
        choice = draw(st.sampled_from(["auto", "any", "tool", "none", None]))
        if choice == "tool":
            body["tool_choice"] = {"type": "tool", "name": tools[0]["name"]}
        elif choice:
            body["tool_choice"] = {"type": choice}
        if choice in ("auto", "any", "tool") and draw(st.booleans()):
            body["tool_choice"]["disable_parallel_tool_use"] = True
    optional = {
        "stop_sequences": st.lists(text, min_size=1, max_size=6),
        "temperature": st.floats(0, 1),
        "top_p": st.floats(0, 1),
        "top_k": st.integers(1, 100),
        "metadata": st.builds(lambda u: {"user_id": u}, ident),
        "thinking": st.sampled_from(
            [{"type": "enabled", "budget_tokens": 2048}, {"type": "adaptive"}, {"type": "disabled"}]
        ),
        "output_config": st.sampled_from(
            [
                {"effort": "low"},
                {"effort": "max"},
                {"format": {"type": "json_schema", "schema": {"type": "object", "properties": {}}}},
            ]
        ),
        "stream": st.booleans(),
        "context_management": st.just({"edits": [{"type": "clear_thinking_20251015"}]}),
        "cache_control": st.just({"type": "ephemeral"}),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            body[name] = draw(strategy)
    return body


@settings(max_examples=examples(50), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=request(), which=st.integers(0, len(OPTIONS) - 1))
def test_any_valid_request_is_a_valid_openai_request(body, which):
    out, dropped = to_openai_request(body, OPTIONS[which], model="upstream-model")
    validate(out)
    assert check_request(out) is None, check_request(out)
    assert out["model"] == "upstream-model"
    tool_messages = [m["tool_call_id"] for m in out["messages"] if m["role"] == "tool"]
    results = [
        b["tool_use_id"]
        for m in body["messages"]
        if isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_result"
    ]
    assert tool_messages == results  # one tool message per result, in order
    if "context_management" in body:
        assert "context_management" in dropped


# ----------------------------------------------------------------------------- unit cases


def test_claude_code_shaped_request():
    body = {
        "model": "claude-opus-5-5",
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2"},
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                    {"type": "text", "text": "list files"},
                ],
            },
            {"role": "system", "content": "mid-conversation note"},
        ],
        "tools": [
            {
                "name": "Bash",
                "description": "Run bash",
                "input_schema": {"type": "object"},
                "cache_control": {"type": "ephemeral"},
                "defer_loading": False,
            }
        ],
        "metadata": {"user_id": '{"device_id":"d","session_id":"s"}'},
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "medium"},
    }
    out, dropped = to_openai_request(body, OpenAIOptions(), model="qwen")
    validate(out)
    assert out["messages"][0] == {  # the per-request attribution line is not sent (prefix caches)
        "role": "system",
        "content": "You are Claude Code.",
    }
    assert out["messages"][1]["content"][1] == {"type": "text", "text": "list files"}
    assert out["messages"][2] == {"role": "system", "content": "mid-conversation note"}
    assert out["reasoning_effort"] == "medium"
    assert out["tools"] == [
        {
            "type": "function",
            "function": {"name": "Bash", "description": "Run bash", "parameters": {"type": "object"}},
        }
    ]
    assert dropped == ["context_management"]


def test_switches():
    body = {
        "model": "m",
        "max_tokens": 9,
        "top_k": 4,
        "stream": True,
        "stop_sequences": ["a", "b", "c", "d", "e"],
        "metadata": {"user_id": "u"},
        "thinking": {"type": "enabled", "budget_tokens": 20000},
        "messages": [{"role": "user", "content": "x"}],
    }
    out, dropped = to_openai_request(body, options_from_params("openai", {}))
    assert out["max_completion_tokens"] == 9 and out["stop"] == ["a", "b", "c", "d"]
    assert out["reasoning_effort"] == "high" and out["user"] == "u"
    assert dropped == ["top_k", "stop_sequences[4:]"]
    opts = options_from_params(
        "hosted_vllm",
        {
            "stream_include_usage": False,
            "reasoning_effort": False,
            "user_field": None,
            "extra_body": {"seed": 1},
        },
    )
    out, dropped = to_openai_request(body, opts)
    assert out["max_tokens"] == 9 and out["top_k"] == 4 and out["seed"] == 1
    assert "stream_options" not in out and "reasoning_effort" not in out and "user" not in out
    assert set(dropped) == {"thinking", "metadata.user_id"}
    with pytest.raises(ConfigError, match="max_tokens_field"):
        options_from_params("openai", {"max_tokens_field": "n_predict"})


@pytest.mark.parametrize(
    "body,needle",
    [
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "file_1"}}],
                    }
                ]
            },
            "image source 'file'",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "role"),
        ({"messages": [{"role": "user", "content": 5}]}, "content"),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "tool_choice": {"type": "tool", "name": "nope"},
                "tools": [{"name": "a", "input_schema": {"type": "object"}}],
            },
            "no tool named 'nope'",
        ),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "web_fetch_20250910", "name": "web_fetch"}],
            },
            "web_fetch",
        ),
    ],
)
def test_bad_requests_are_400(body, needle):
    with pytest.raises(GatewayError, match=needle) as info:
        to_openai_request({"model": "m", "max_tokens": 5, **body}, OpenAIOptions())
    assert info.value.status == 400 and info.value.type == "invalid_request_error"


def test_client_tools_and_structured_output():
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "bash_20250124", "name": "bash"}],
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
    }
    out, _ = to_openai_request(body, OpenAIOptions())
    validate(out)
    assert out["tools"][0]["function"]["name"] == "bash"
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": {"type": "object"}, "strict": True},
    }
