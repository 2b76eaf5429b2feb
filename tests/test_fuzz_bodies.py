"""Fuzz the client routes' request bodies with hypothesis: well-formed-ish JSON with wrong types in
every field, invalid JSON, and other content types.

The gateway runs in process in front of the built-in mock model (`m`), an OpenAI deployment on
the fake upstream (`oa`) and the /anthropic pass-through to the fake upstream, none of which is
scripted to fail. So any 5xx is the gateway's own. Every reply must be JSON or SSE, errors in the
envelope of the API called, and no request may take longer than REQUEST_SECONDS."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fuzz_support import EXAMPLES, LONG
from parley.testing.procs import openai_deployment

MASTER = "sk-parley-master-fuzz"
REQUEST_SECONDS = 20.0
ANTHROPIC_ROUTES = ["/v1/messages", "/v1/messages/count_tokens", "/anthropic/v1/messages"]
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not LONG,  # the default suite is the same run every time; `make fuzz` explores
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def gateway(start_inprocess_module, fake_upstream):
    return start_inprocess_module(
        {
            "model_list": [
                {"model_name": "m", "params": {"model": "mock/m"}},
                openai_deployment("oa", fake_upstream, timeout=10),
            ],
            "general_settings": {"master_key": MASTER, "max_request_size_mb": 2},
            "router_settings": {"num_retries": 0, "allowed_fails": 100000},
            "anthropic_passthrough": {"api_base": fake_upstream.url, "api_key": "sk-ant-fake"},
        }
    )


@pytest.fixture(scope="module")
def pool():
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


# -- strategies ---------------------------------------------------------------------------------

TEXT = st.one_of(st.text(max_size=20), st.sampled_from(["", "\u0000", "\U0001f600" * 3, "日本語", "\ud7ff"]))
HUGE = st.integers(min_value=1000, max_value=200_000).map(lambda n: "x" * n)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
JUNK = st.one_of(JSON, HUGE)
BLOCK_TYPES = [
    "text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking",
    "server_tool_use", "search_result", "image_url", "input_audio", "file", "nonsense",
]  # fmt: skip
BLOCK_FIELDS = ["text", "source", "id", "name", "input", "content", "tool_use_id", "data", "thinking",
                "image_url", "url", "cache_control", "title", "is_error", "signature"]  # fmt: skip


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the valid value, often anything else."""
    return st.one_of(valid, valid, JUNK)


BLOCK = st.fixed_dictionaries(
    {"type": maybe(st.sampled_from(BLOCK_TYPES))},
    optional={f: maybe(JSON) for f in BLOCK_FIELDS},
)
CONTENT = st.one_of(TEXT, HUGE, st.lists(st.one_of(BLOCK, JUNK), max_size=4), JSON)
TOOL_CALL = st.fixed_dictionaries(
    {}, optional={"id": maybe(TEXT), "type": maybe(st.just("function")), "function": maybe(
        st.fixed_dictionaries({}, optional={"name": maybe(TEXT), "arguments": maybe(TEXT)}))}
)  # fmt: skip
MESSAGE = st.fixed_dictionaries(
    {"role": maybe(st.sampled_from(["user", "assistant", "system", "tool", "developer"]))},
    optional={
        "content": CONTENT,
        "tool_calls": maybe(st.lists(TOOL_CALL, max_size=2)),
        "tool_call_id": maybe(TEXT),
        "name": maybe(TEXT),
    },
)
TOOL = st.fixed_dictionaries(
    {},
    optional={
        "name": maybe(TEXT),
        "type": maybe(st.sampled_from(["function", "custom", "web_search_20250305"])),
        "description": maybe(TEXT),
        "input_schema": maybe(st.just({"type": "object"})),
        "function": maybe(st.fixed_dictionaries({"name": maybe(TEXT)}, optional={"parameters": JSON})),
    },
)
COMMON = {
    "model": maybe(st.sampled_from(["m", "oa", "claude-none"])),
    "messages": maybe(st.lists(st.one_of(MESSAGE, MESSAGE, JUNK), max_size=4)),
}
OPTIONAL = {
    "max_tokens": maybe(st.integers(min_value=-5, max_value=2**63 - 1)),
    "max_completion_tokens": JUNK,
    "stream": maybe(st.booleans()),
    "system": CONTENT,
    "tools": maybe(st.lists(st.one_of(TOOL, JUNK), max_size=3)),
    "tool_choice": maybe(
        st.sampled_from([{"type": "any"}, {"type": "tool", "name": "x"}, "auto", "required"])
    ),
    "temperature": JUNK,
    "top_p": JUNK,
    "stop": JUNK,
    "stop_sequences": JUNK,
    "metadata": JUNK,
    "stream_options": maybe(st.just({"include_usage": True})),
    "thinking": maybe(st.just({"type": "enabled", "budget_tokens": 1024})),
    "response_format": JUNK,
    "n": JUNK,
    "user": JUNK,
}
WILD = st.fixed_dictionaries(COMMON, optional=OPTIONAL)
FIELDS = {**COMMON, **OPTIONAL}


@st.composite
def one_wrong(draw: st.DrawFn) -> dict[str, Any]:
    """A valid request with one field (possibly a message's content) drawn from its fuzz strategy:
    these get past the front door's checks to the translators, the router and the providers."""
    content = draw(st.one_of(st.just("hi"), CONTENT))
    body: dict[str, Any] = {
        "model": draw(st.sampled_from(["m", "oa"])),
        "max_tokens": draw(st.integers(min_value=1, max_value=64)),
        "messages": [{"role": "user", "content": content}],
        "stream": draw(st.booleans()),
    }
    name = draw(st.sampled_from(sorted(FIELDS)))
    body[name] = draw(FIELDS[name])
    return body


BODIES = st.one_of(WILD, one_wrong()).map(orjson.dumps)
NOT_JSON = st.one_of(
    st.binary(max_size=64),
    BODIES.map(lambda b: b[: len(b) // 2]),  # cut in half
    st.sampled_from([b"", b"null", b"[]", b'"x"', b"1e400", b'{"model": 1e99999}',
                     b'{"max_tokens": 99999999999999999999999}', b"\xff\xfe{}", b'{"a": "\\ud800"}']),
)  # fmt: skip
CONTENT_TYPES = st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "", "json"]
)


# -- the checks ---------------------------------------------------------------------------------


def send(gateway, pool, path: str, body: bytes, content_type: str = "application/json") -> Any:
    headers = {"x-api-key": MASTER, "authorization": f"Bearer {MASTER}", "anthropic-version": "2023-06-01"}
    if content_type:
        headers["content-type"] = content_type
    future = pool.submit(gateway.post, path, content=body, headers=headers)
    return future.result(timeout=REQUEST_SECONDS)  # a hang fails the example


def check_reply(path: str, reply: Any) -> None:
    status, text = reply.status_code, reply.text
    assert status < 500, f"{path} {status}: {text[:500]}"
    assert "internal gateway error" not in text, text[:500]
    kind = reply.headers.get("content-type", "")
    if kind.startswith("text/event-stream"):
        assert status == 200
        return
    assert kind.startswith("application/json"), kind
    data = reply.json()
    if status < 400:
        return
    if path.startswith("/v1/chat"):
        assert isinstance(data["error"]["message"], str) and isinstance(data["error"]["type"], str), data
    else:
        assert data["type"] == "error", data
        assert isinstance(data["error"]["type"], str) and isinstance(data["error"]["message"], str), data


@pytest.mark.parametrize("path", ANTHROPIC_ROUTES)
@SETTINGS
@given(body=BODIES)
@example(body=b'{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "tools": 5}')
@example(
    body=b'{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":"x"}]}]}'
)
@example(
    body=b'{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":5}]}]}'
)
def test_anthropic_routes_survive_any_json(gateway, pool, path, body):
    check_reply(path, send(gateway, pool, path, body))


@SETTINGS
@given(body=BODIES)
@example(body=b'{"model": "oa", "messages": [{"role": "user", "content": "hi"}], "tools": {"a": 1}}')
def test_chat_completions_survives_any_json(gateway, pool, body):
    check_reply("/v1/chat/completions", send(gateway, pool, "/v1/chat/completions", body))


@pytest.mark.parametrize("path", [*ANTHROPIC_ROUTES, "/v1/chat/completions"])
@SETTINGS
@given(body=st.one_of(NOT_JSON, BODIES), content_type=CONTENT_TYPES)
def test_routes_survive_invalid_json_and_other_content_types(gateway, pool, path, body, content_type):
    check_reply(path, send(gateway, pool, path, body, content_type))


@pytest.mark.parametrize("path", ["/v1/messages/count_tokens"])
@pytest.mark.parametrize("tools", ["5", '"abc"', '{"a": 1}', "[5, null]", "true"])
def test_count_tokens_on_an_openai_backend_takes_any_tools(gateway, pool, path, tools):
    body = (
        b'{"model": "oa", "messages": [{"role": "user", "content": "hi"}], "tools": ' + tools.encode() + b"}"
    )
    reply = send(gateway, pool, path, body)
    check_reply(path, reply)
