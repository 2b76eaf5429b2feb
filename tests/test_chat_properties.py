"""Property tests of the Chat Completions <-> Anthropic translators against both SDKs' own types."""

from __future__ import annotations

import itertools

import orjson
from anthropic.types.message_create_params import (
    MessageCreateParamsNonStreaming,
    MessageCreateParamsStreaming,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat.completion_create_params import (
    CompletionCreateParamsNonStreaming,
    CompletionCreateParamsStreaming,
)

from chat_typecheck import check
from parley.core.anthropic_stream import message_events
from parley.translate.chat_request import ChatPlan, to_anthropic
from parley.translate.chat_response import to_chat_completion
from parley.translate.chat_stream import ChatStreamTranslator

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
text = st.text(min_size=1, max_size=30)
name = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,20}", fullmatch=True)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.text(max_size=12))
json_object = st.dictionaries(
    st.text(max_size=8),
    st.recursive(
        json_leaf,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
        max_leaves=6,
    ),
    max_size=4,
)
cache = st.sampled_from([{"type": "ephemeral"}, {"type": "ephemeral", "ttl": "1h"}])
breakpoint_ = st.fixed_dictionaries(
    {"mode": st.just("explicit")}, optional={"ttl": st.sampled_from(["30m", "12h"])}
)


def maybe_cached(part: dict) -> st.SearchStrategy[dict]:
    """A part as is, with Anthropic's `cache_control` (an extension), or OpenAI's own breakpoint."""
    return st.one_of(
        st.just(part),
        cache.map(lambda c: dict(part, cache_control=c)),
        breakpoint_.map(lambda b: dict(part, prompt_cache_breakpoint=b)),
    )


def without_cache_control(value):
    if isinstance(value, dict):
        return {k: without_cache_control(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [without_cache_control(v) for v in value]
    return value


text_part = text.map(lambda t: {"type": "text", "text": t})
image_part = st.one_of(
    st.sampled_from(["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf"]).map(
        lambda m: f"data:{m};base64,iVBORw0KGgo="
    ),
    st.sampled_from(["https://example.com/a.png", "http://x.test/doc.pdf?v=1"]),
).flatmap(
    lambda url: st.fixed_dictionaries(
        {
            "type": st.just("image_url"),
            "image_url": st.fixed_dictionaries(
                {"url": st.just(url)}, optional={"detail": st.sampled_from(["auto", "low", "high"])}
            ),
        }
    )
)
file_part = st.fixed_dictionaries(
    {
        "type": st.just("file"),
        "file": st.fixed_dictionaries(
            {"file_data": st.just("data:application/pdf;base64,JVBERi0xLjQK")},
            optional={"filename": st.just("a.pdf")},
        ),
    }
)
user_part = st.one_of(text_part.flatmap(maybe_cached), image_part, file_part)
content_text = st.one_of(text, st.lists(text_part.flatmap(maybe_cached), min_size=1, max_size=3))


def tool_call(call_id: str) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {
            "id": st.just(call_id),
            "type": st.just("function"),
            "function": st.fixed_dictionaries(
                {"name": name, "arguments": json_object.map(lambda o: orjson.dumps(o).decode())}
            ),
        }
    )


@st.composite
def conversation(draw) -> list[dict]:
    messages: list[dict] = []
    for turn in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["system", "developer", "user", "user", "assistant", "tools"]))
        if kind in ("system", "developer"):
            messages.append({"role": kind, "content": draw(content_text)})
        elif kind == "user":
            messages.append(
                {
                    "role": "user",
                    "content": draw(st.one_of(text, st.lists(user_part, min_size=1, max_size=4))),
                }
            )
        elif kind == "assistant":
            messages.append(
                {
                    "role": "assistant",
                    "content": draw(st.one_of(text, st.lists(text_part, min_size=1, max_size=2))),
                }
            )
        else:
            ids = [f"call_{turn}_{i}" for i in range(draw(st.integers(1, 3)))]
            calls = [draw(tool_call(i)) for i in ids]
            messages.append(
                draw(
                    st.fixed_dictionaries(
                        {"role": st.just("assistant"), "tool_calls": st.just(calls)},
                        optional={"content": st.none() | text},
                    )
                )
            )
            for i in ids:
                messages.append({"role": "tool", "tool_call_id": i, "content": draw(content_text)})
    if not any(m["role"] == "user" for m in messages):
        messages.insert(0, {"role": "user", "content": "hi"})
    return messages


function_tool = st.fixed_dictionaries(
    {
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {"name": name},
            optional={
                "description": text,
                "strict": st.booleans(),
                "parameters": st.just(
                    {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
                ),
            },
        ),
    }
)
tool_choice = st.one_of(
    st.sampled_from(["auto", "none", "required"]),
    name.map(lambda n: {"type": "function", "function": {"name": n}}),
)
response_format = st.sampled_from(
    [
        {"type": "text"},
        {"type": "json_object"},
        {
            "type": "json_schema",
            "json_schema": {
                "name": "out",
                "schema": {
                    "type": "object",
                    "properties": {"a": {"type": "integer"}},
                    "required": ["a"],
                    "additionalProperties": False,
                },
                "strict": True,
            },
        },
    ]
)

request = st.fixed_dictionaries(
    {"model": st.just("claude-x"), "messages": conversation()},
    optional={
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "max_tokens": st.integers(1, 64000),
        "max_completion_tokens": st.integers(1, 64000),
        "stop": st.one_of(text, st.lists(text, min_size=1, max_size=4)),
        "tools": st.lists(function_tool, min_size=1, max_size=3),
        "tool_choice": tool_choice,
        "parallel_tool_calls": st.booleans(),
        "response_format": response_format,
        "reasoning_effort": st.sampled_from(["none", "minimal", "low", "medium", "high"]),
        "user": text,
        "seed": st.integers(0, 100),
        "n": st.just(1),
        "logprobs": st.booleans(),
        "presence_penalty": st.floats(-2, 2),
        "metadata": st.dictionaries(name, text, max_size=2),
        "stream": st.booleans(),
        "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}),
    },
)


@SETTINGS
@given(request, st.booleans())
def test_valid_openai_request_translates_to_valid_anthropic_request(body, native_json):
    if not body.get("stream"):
        body.pop("stream_options", None)
    check(
        without_cache_control(body),
        CompletionCreateParamsStreaming if body.get("stream") else CompletionCreateParamsNonStreaming,
    )
    out, _plan = to_anthropic(body, "claude-upstream", native_json=native_json)
    # anthropic 2.12's types no longer list the sampling fields the API still documents; check them here
    sampling = {k: out.pop(k) for k in ("temperature", "top_p") if k in out}
    assert all(0 <= v <= 1 for v in sampling.values())
    check(out, MessageCreateParamsStreaming if out.get("stream") else MessageCreateParamsNonStreaming)
    assert out["model"] == "claude-upstream"
    assert out["max_tokens"] == body.get("max_completion_tokens", body.get("max_tokens", out["max_tokens"]))
    roles = [m["role"] for m in out["messages"]]
    assert all(a != b for a, b in itertools.pairwise(roles)), "same-role turns must be merged"
    for turn in out["messages"]:
        if turn["role"] == "user" and isinstance(turn["content"], list):
            kinds = [b["type"] for b in turn["content"]]
            results = kinds.count("tool_result")
            assert kinds[:results] == ["tool_result"] * results, "tool results come first in a turn"
    marks = orjson.dumps(body).count(b'"cache_control"') + orjson.dumps(body).count(
        b'"prompt_cache_breakpoint"'
    )
    assert orjson.dumps(out).count(b'"cache_control"') == marks
    sent_calls = [
        b
        for m in out["messages"]
        if isinstance(m["content"], list)
        for b in m["content"]
        if b["type"] == "tool_use"
    ]
    given_calls = [c for m in body["messages"] for c in m.get("tool_calls") or ()]
    assert [(b["id"], b["input"]) for b in sent_calls] == [
        (c["id"], orjson.loads(c["function"]["arguments"])) for c in given_calls
    ]


# ---------------------------------------------------------------------- replies: stream vs whole

text_block = st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=60)})
thinking_block = st.fixed_dictionaries(
    {
        "type": st.just("thinking"),
        "thinking": st.text(max_size=60),
        "signature": st.text(min_size=1, max_size=20),
    }
)
redacted_block = st.fixed_dictionaries(
    {"type": st.just("redacted_thinking"), "data": st.text(min_size=1, max_size=20)}
)
tool_use_block = st.fixed_dictionaries(
    {
        "type": st.just("tool_use"),
        "id": name.map(lambda n: "toolu_" + n),
        "name": st.sampled_from(["get_weather", "lookup", "json_output"]),
        "input": json_object,
    }
)
usage = st.fixed_dictionaries(
    {"input_tokens": st.integers(0, 10**6), "output_tokens": st.integers(0, 10**5)},
    optional={
        "cache_read_input_tokens": st.integers(0, 10**6),
        "cache_creation_input_tokens": st.integers(0, 10**6),
    },
)
message = st.fixed_dictionaries(
    {
        "id": name.map(lambda n: "msg_" + n),
        "type": st.just("message"),
        "role": st.just("assistant"),
        "model": st.just("claude-upstream"),
        "content": st.lists(
            st.one_of(text_block, thinking_block, redacted_block, tool_use_block), max_size=6
        ),
        "stop_reason": st.sampled_from(
            ["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause_turn"]
        ),
        "stop_sequence": st.none(),
        "usage": usage,
    }
)


def strip_list_indexes(message: dict) -> None:
    """Streamed list entries carry the `index` the SDK accumulator merges by; whole replies do not."""
    for entry in [*(message.get("thinking_blocks") or ()), *(message.get("tool_calls") or ())]:
        entry.pop("index", None)
    for entry in (message.get("provider_specific_fields") or {}).get("citations") or ():
        entry.pop("index", None)


@SETTINGS
@given(message, st.integers(2, 40), st.sampled_from([None, "json_output"]))
def test_streamed_and_whole_replies_agree(msg, piece, json_tool):
    plan = ChatPlan(model="claude-x", stream=True, include_usage=True, json_tool=json_tool)
    whole = ChatCompletion.model_validate(to_chat_completion(msg, plan))
    translator = ChatStreamTranslator(plan)
    state = ChatCompletionStreamState()
    chunks = [c for name, payload in message_events(msg, piece) for c in translator.feed(name, payload)]
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    assert translator.finished
    # the snapshot, not get_final_completion(), which raises on finish_reason length/content_filter
    streamed = ChatCompletion.model_validate(state.current_completion_snapshot.model_dump())
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole.usage.model_dump(exclude_none=True)
    a = whole.model_dump(exclude_none=True)
    b = streamed.model_dump(exclude_none=True)
    for side in (a, b):
        chat_message = side["choices"][0]["message"]
        strip_list_indexes(chat_message)
        chat_message.pop("parsed", None)
        if chat_message.get("content") == "":
            del chat_message["content"]  # the role chunk starts content at ""; no text means None
        for call in chat_message.get("tool_calls") or ():
            call["function"].pop("parsed_arguments", None)
            call["function"]["arguments"] = orjson.loads(call["function"]["arguments"])
    assert b == a
