"""OpenAI chunk stream -> Anthropic events: structure, the SDK accumulator, and equivalence.

Property: for any reply and any valid way a server may chunk it (text split anywhere, tool calls
sequential, interleaved or whole, usage chunk or none), the events obey the Anthropic stream
grammar, the anthropic SDK's own `accumulate_event` consumes them, and the message it builds
equals the non-streaming translation of the same reply.
"""

from __future__ import annotations

import json

import jiter
import orjson
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fuzz_support import examples
from parley.translate.json_prefix import JsonPrefix
from parley.translate.openai_errors import stream_error_payload, translate_error
from parley.translate.openai_stream import OpenAIStreamTranslator
from parley.translate.openai_to_anthropic import to_anthropic_message

STOPS = ("STOP", "\n\nHuman:")
ident = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ident, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def completion(draw) -> dict:
    message: dict = {"role": "assistant", "content": draw(st.none() | st.text(min_size=1, max_size=60))}
    if draw(st.booleans()):
        field = draw(st.sampled_from(["reasoning_content", "reasoning"]))
        message[field] = draw(st.text(min_size=1, max_size=60))
    if draw(st.integers(0, 9)) == 0:
        message["refusal"] = draw(st.text(min_size=1, max_size=20))
    calls = [
        {
            "id": f"call_{i}{draw(ident)}",
            "type": "function",
            "function": {
                "name": draw(ident),
                "arguments": json.dumps(
                    draw(st.dictionaries(ident, json_value, max_size=4)),
                    indent=draw(st.sampled_from([None, 1])),
                ),
            },
        }
        for i in range(draw(st.integers(0, 3)))
    ]
    if calls:
        message["tool_calls"] = calls
    finish = draw(st.sampled_from(["stop", "length", "tool_calls" if calls else "stop", "content_filter"]))
    choice = {"index": 0, "message": message, "finish_reason": finish}
    if finish == "stop" and draw(st.booleans()):
        choice["stop_reason"] = draw(st.sampled_from(STOPS))
    out = {"id": "chatcmpl-" + draw(ident), "object": "chat.completion", "model": "up", "choices": [choice]}
    if draw(st.booleans()):
        prompt = draw(st.integers(0, 5000))
        out["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": draw(st.integers(0, 5000)),
            "prompt_tokens_details": {"cached_tokens": draw(st.integers(0, prompt))},
        }
    return out


def split(draw, text: str) -> list[str]:
    if not text:
        return []
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=6)))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True) if text[a:b]]


@st.composite
def chunked(draw):
    reply = draw(completion())
    choice = reply["choices"][0]
    message = choice["message"]
    base = {"id": reply["id"], "object": "chat.completion.chunk", "model": "up"}

    def chunk(delta, finish=None, **extra):
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, **extra}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    for field in ("reasoning_content", "reasoning", "content", "refusal"):
        for piece in split(draw, message.get(field) or ""):
            chunks.append(chunk({field: piece}))
    streams = []
    for i, call in enumerate(message.get("tool_calls") or ()):
        head = {
            "index": i,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        mode = draw(st.sampled_from(["fragments", "whole"]))
        if mode == "whole":
            head["function"]["arguments"] = call["function"]["arguments"]
            streams.append([head])
        else:
            streams.append(
                [head]
                + [
                    {"index": i, "function": {"arguments": p}}
                    for p in split(draw, call["function"]["arguments"])
                ]
            )
    if draw(st.booleans()):  # interleave parallel calls; each call still starts in index order
        started = 0
        while any(streams):
            ready = [i for i, s in enumerate(streams) if s and i <= started]
            i = draw(st.sampled_from(ready))
            started += i == started
            chunks.append(chunk({"tool_calls": [streams[i].pop(0)]}))
    else:
        chunks += [chunk({"tool_calls": [f]}) for s in streams for f in s]
    extra = {"stop_reason": choice["stop_reason"]} if "stop_reason" in choice else {}
    chunks.append(chunk({}, choice["finish_reason"], **extra))
    if "usage" in reply:
        chunks.append({**base, "choices": [], "usage": reply["usage"]})
    return reply, chunks


def run(chunks, **kw) -> list[tuple[str, dict]]:
    machine = OpenAIStreamTranslator(model="claude-x", stop_sequences=STOPS, input_estimate=42, **kw)
    events = []
    for c in chunks:
        events += machine.feed(orjson.loads(orjson.dumps(c)))
    return events + machine.finish(done=True)


def check_grammar(events: list[tuple[str, dict]]) -> None:
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names.count("message_start") == 1
    assert names[-2:] == ["message_delta", "message_stop"] and names.count("message_stop") == 1
    assert events[0][1]["message"]["usage"]["input_tokens"] is not None
    open_index, next_index = None, 0
    for name, payload in events[1:-2]:
        assert payload["type"] == name
        if name == "content_block_start":
            assert open_index is None and payload["index"] == next_index
            if payload["content_block"]["type"] == "tool_use":
                assert payload["content_block"]["input"] == {}
            open_index, next_index = payload["index"], next_index + 1
        elif name == "content_block_delta":
            assert payload["index"] == open_index
        else:
            assert name == "content_block_stop" and payload["index"] == open_index
            open_index = None
    assert open_index is None


def accumulate(events):
    snapshot, bufs = None, {}
    for name, payload in events:
        snapshot = accumulate_event(event=dict(payload, type=name), current_snapshot=snapshot, json_bufs=bufs)
    return snapshot


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=chunked())
def test_stream_equals_whole_reply(case):
    reply, chunks = case
    events = run(chunks)
    check_grammar(events)
    final = accumulate(events)
    whole, notes = to_anthropic_message(reply, model="claude-x", stop_sequences=STOPS, input_estimate=42)
    assert not [n for n in notes if n.startswith("invalid")]
    streamed = Message.model_validate(final.to_dict()).to_dict()
    expected = Message.model_validate(whole).to_dict()
    if "usage_estimated" in notes:  # a stream also counts its pieces (one token each on local servers)
        assert streamed["usage"]["output_tokens"] >= expected["usage"]["output_tokens"]
        streamed["usage"]["output_tokens"] = expected["usage"]["output_tokens"]
    assert streamed == expected


def test_usage_estimated_and_flagged_without_usage_chunk():
    base = {"id": "c1", "choices": [{"index": 0, "delta": {"content": "abcdefgh"}, "finish_reason": None}]}
    machine = OpenAIStreamTranslator(model="m", input_estimate=10)
    machine.feed(base)
    machine.feed({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    delta = machine.finish()[-2][1]
    assert delta["usage"]["output_tokens"] == 2 and delta["usage"]["input_tokens"] == 10
    assert machine.estimated


def test_cached_usage_split_and_stop_with_tool_calls():
    """Ollama/llama.cpp finish with "stop" while returning tool calls: still tool_use."""
    chunks = [
        {
            "id": "x",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"a": 1}'}}
                        ]
                    },
                    "finish_reason": None,
                }
            ],
        },
        {
            "id": "x",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": 7,
                "prompt_tokens_details": {"cached_tokens": 60},
            },
        },
    ]
    events = run(chunks)
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"] == {
        "input_tokens": 40,
        "output_tokens": 7,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 60,
    }


def test_interleaved_calls_stream_open_call_immediately():
    """The first call's fragments go out as they arrive; the second waits for the first to close."""

    def frag(i, args, **head):
        return {
            "id": "x",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": head.get("id"),
                                "function": {"arguments": args, "name": head.get("name")},
                            }
                        ]
                    },
                    "finish_reason": None,
                }
            ],
        }

    machine = OpenAIStreamTranslator(model="m")
    out = machine.feed(frag(0, '{"a"', id="call_a", name="f"))
    assert [p["delta"]["partial_json"] for n, p in out if n == "content_block_delta"] == ['{"a"']
    assert machine.feed(frag(1, '{"b"', id="call_b", name="g")) == []
    out = machine.feed(frag(0, ": 1}"))
    names = [n for n, _ in out]
    assert names == [
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
    ]
    assert out[2][1]["content_block"]["id"] == "toolu_call_b"


def test_invalid_arguments_never_reach_the_client_parser():
    chunks = [
        {
            "id": "x",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "function": {"name": "f", "arguments": "{\"a\": 'x'}"},
                            }
                        ]
                    },
                    "finish_reason": "tool_calls",
                }
            ],
        }
    ]
    machine = OpenAIStreamTranslator(model="m")
    events = [e for c in chunks for e in machine.feed(c)] + machine.finish()
    final = accumulate(events)
    assert final.content[0].input == {} and final.stop_reason == "tool_use"
    assert machine.notes == ["invalid_tool_arguments:toolu_call_1"]


def test_mid_stream_error_and_truncation():
    machine = OpenAIStreamTranslator(model="m")
    machine.feed({"id": "x", "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]})
    events = machine.feed({"error": {"message": "boom", "type": "server_error"}})
    assert events == [("error", {"type": "error", "error": {"type": "api_error", "message": "boom"}})]
    assert machine.finish() == []
    cut = OpenAIStreamTranslator(model="m")
    cut.feed({"id": "x", "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]})
    assert cut.finish(done=False)[0][0] == "error"


def test_error_translation():
    status, body, headers = translate_error(
        503,
        b'{"error":{"message":"busy","type":"server_error"}}',
        {"retry-after": "3", "set-cookie": "x"},
        "req_1",
    )
    assert status == 529 and headers == {"retry-after": "3", "content-type": "application/json"}
    assert orjson.loads(body) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "busy"},
        "request_id": "req_1",
    }
    status, body, _ = translate_error(
        429, b'{"error":{"message":"quota","code":"insufficient_quota"}}', {}, "r"
    )
    assert status == 402 and orjson.loads(body)["error"]["type"] == "billing_error"
    status, body, _ = translate_error(502, b"<html>bad gateway</html>", {}, "r")
    assert status == 502 and orjson.loads(body)["error"]["message"] == "<html>bad gateway</html>"
    assert stream_error_payload({"code": 429, "message": "slow down"})["error"]["type"] == "rate_limit_error"


@settings(max_examples=examples(100), deadline=None)
@given(value=st.dictionaries(ident, json_value, max_size=4), cuts=st.lists(st.integers(0, 200), max_size=5))
def test_json_prefix_accepts_every_split_of_valid_json(value, cuts):
    text = json.dumps(value)
    checker = JsonPrefix()
    points = sorted({min(c, len(text)) for c in cuts})
    for a, b in zip([0, *points], [*points, len(text)], strict=True):
        assert checker.feed(text[a:b]) == b - a
    assert checker.complete


@settings(max_examples=examples(200), deadline=None)
@given(text=st.text(alphabet="{}[]\":,0123456789.-+eE truefalsn\\'ab", max_size=30))
@example(text='{"\\0')  # an invalid escape the checker once let through
@example(text='{"a\\u12g')
def test_json_prefix_never_passes_what_the_sdk_parser_rejects(text):
    checker = JsonPrefix()
    accepted = text[: checker.feed(text)]
    if accepted.strip():
        jiter.from_json(accepted.encode(), partial_mode=True)  # what accumulate_event runs
    if checker.complete:
        assert isinstance(json.loads(accepted), dict)
