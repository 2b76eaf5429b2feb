"""Properties of the Bedrock Converse translators.

1. Any valid Anthropic request translates to a Converse request that botocore's own schema of the
   service accepts (and that follows Converse's rules: starts with user, alternates, toolConfig
   present with tool blocks).
2. Any Converse reply, streamed as ConverseStream events cut at random, translates to Anthropic
   events that the anthropic SDK's own accumulator turns into the same Message as the translation
   of the whole reply.
"""

from __future__ import annotations

import base64
import itertools

import orjson
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_support import examples
from parley.testing.fake_bedrock import _converse_problem, schema_errors
from parley.translate.bedrock.converse_request import to_converse_request
from parley.translate.bedrock.converse_response import ConverseStreamTranslator, to_anthropic_message

SETTINGS = settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
CACHE = st.sampled_from([None, {"type": "ephemeral"}, {"type": "ephemeral", "ttl": "1h"}])
TOOL_NAMES = ["get_weather", "search", "run_bash"]


def cached(block: dict, control) -> dict:
    return dict(block, cache_control=control) if control else block


@st.composite
def user_block(draw, tool_ids: list[str]) -> dict:
    kind = draw(
        st.sampled_from(
            ["text", "image", "pdf", "text_doc", "tool_result"]
            if tool_ids
            else ["text", "image", "pdf", "text_doc"]
        )
    )
    if kind == "text":
        block = {"type": "text", "text": draw(TEXT)}
    elif kind == "image":
        block = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    elif kind == "pdf":
        data = base64.b64encode(b"%PDF-1.4 fake").decode()
        block = {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": data},
        }
        if draw(st.booleans()):
            block["title"] = draw(TEXT)
    elif kind == "text_doc":
        block = {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": draw(TEXT)},
        }
    else:
        content = draw(
            st.one_of(
                TEXT, st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}), max_size=2)
            )
        )
        block = {"type": "tool_result", "tool_use_id": tool_ids.pop(0), "content": content}
        if draw(st.booleans()):
            block["is_error"] = True
    return cached(block, draw(CACHE))


@st.composite
def assistant_blocks(draw, tool_ids: list[str], n: int) -> list[dict]:
    blocks: list[dict] = []
    if draw(st.booleans()):
        blocks.append({"type": "thinking", "thinking": draw(TEXT), "signature": draw(TEXT)})
    if draw(st.booleans()):
        blocks.append({"type": "text", "text": draw(TEXT)})
    for i in range(draw(st.integers(0, 2))):
        tool_id = f"toolu_{n}_{i}"
        tool_ids.append(tool_id)
        blocks.append(
            {
                "type": "tool_use",
                "id": tool_id,
                "name": draw(st.sampled_from(TOOL_NAMES)),
                "input": {"q": draw(TEXT)},
            }
        )
    return blocks or [{"type": "text", "text": draw(TEXT)}]


@st.composite
def request(draw) -> tuple[dict, str]:
    model = draw(
        st.sampled_from(
            ["meta.llama3-3-70b-instruct-v1:0", "converse/us.anthropic.claude-sonnet-4-5-20250929-v1:0"]
        )
    )
    messages: list[dict] = []
    pending: list[str] = []
    for n in range(draw(st.integers(0, 3))):
        results = [draw(user_block(pending)) for _ in range(len(pending))] if pending else []
        others = draw(st.lists(user_block([]), min_size=0 if results else 1, max_size=2))
        messages.append({"role": "user", "content": results + others})
        messages.append({"role": "assistant", "content": draw(assistant_blocks(pending, n))})
    final = [draw(user_block(pending)) for _ in range(len(pending))]
    messages.append({"role": "user", "content": [*final, {"type": "text", "text": draw(TEXT)}]})
    body: dict = {"model": "x", "max_tokens": draw(st.integers(1, 4096)), "messages": messages}
    if draw(st.booleans()):
        body["system"] = draw(
            st.one_of(
                TEXT,
                st.lists(
                    st.builds(lambda t, c: cached({"type": "text", "text": t}, c), TEXT, CACHE),
                    min_size=1,
                    max_size=2,
                ),
            )
        )
    if any(b["type"] == "tool_use" for m in messages for b in m["content"]) or draw(st.booleans()):
        tools = [
            {"name": name, "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}
            for name in TOOL_NAMES
        ]
        body["tools"] = [cached(t, draw(CACHE)) for t in tools]
        body["tool_choice"] = draw(
            st.sampled_from(
                [{"type": "auto"}, {"type": "any"}, {"type": "tool", "name": "search"}, {"type": "none"}]
            )
        )
    for name, strategy in (
        ("temperature", st.floats(0, 1)),
        ("top_p", st.floats(0, 1)),
        ("top_k", st.integers(1, 500)),
        ("stop_sequences", st.lists(TEXT, min_size=1, max_size=3)),
        ("thinking", st.just({"type": "enabled", "budget_tokens": 1024})),
    ):
        if draw(st.booleans()):
            body[name] = draw(strategy)
    return body, model


@SETTINGS
@given(case=request())
def test_valid_anthropic_request_is_a_valid_converse_request(case):
    body, model = case
    converse, _ = to_converse_request(body, model, ["interleaved-thinking-2025-05-14"])
    wire = orjson.loads(orjson.dumps(converse))
    assert schema_errors("Converse", dict(wire, modelId=model)) is None
    assert _converse_problem(wire) is None


@st.composite
def converse_reply(draw) -> dict:
    blocks: list[dict] = []
    for i in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["text", "toolUse", "reasoning", "redacted"]))
        if kind == "text":
            blocks.append({"text": draw(TEXT)})
        elif kind == "toolUse":
            value = draw(
                st.dictionaries(
                    st.sampled_from(["a", "b", "city"]),
                    st.one_of(TEXT, st.integers(-(2**53), 2**53), st.booleans()),
                )
            )
            blocks.append({"toolUse": {"toolUseId": f"tooluse_{i}", "name": "get_weather", "input": value}})
        elif kind == "reasoning":
            blocks.append(
                {"reasoningContent": {"reasoningText": {"text": draw(TEXT), "signature": draw(TEXT)}}}
            )
        else:
            blocks.append(
                {
                    "reasoningContent": {
                        "redactedContent": base64.b64encode(draw(st.binary(min_size=1, max_size=8))).decode()
                    }
                }
            )
    usage = {"inputTokens": draw(st.integers(0, 5000)), "outputTokens": draw(st.integers(0, 5000))}
    if draw(st.booleans()):
        usage["cacheReadInputTokens"] = draw(st.integers(0, 5000))
        usage["cacheWriteInputTokens"] = draw(st.integers(0, 5000))
    usage["totalTokens"] = sum(usage.values())
    stop = draw(st.sampled_from(["end_turn", "tool_use", "max_tokens", "stop_sequence", "content_filtered"]))
    return {
        "output": {"message": {"role": "assistant", "content": blocks}},
        "stopReason": stop,
        "usage": usage,
    }


def pieces(draw, text: str) -> list[str]:
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=3))) if len(text) > 1 else []
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a] or [text]


@st.composite
def streamed(draw) -> tuple[dict, list[tuple[str, dict]]]:
    reply = draw(converse_reply())
    events: list[tuple[str, dict]] = [("messageStart", {"role": "assistant"})]
    for index, block in enumerate(reply["output"]["message"]["content"]):
        at = {"contentBlockIndex": index}
        if "text" in block:
            events += [
                ("contentBlockDelta", dict(at, delta={"text": p})) for p in pieces(draw, block["text"])
            ]
        elif "toolUse" in block:
            use = block["toolUse"]
            events.append(
                (
                    "contentBlockStart",
                    dict(at, start={"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}),
                )
            )
            arguments = orjson.dumps(use["input"]).decode()
            events += [
                ("contentBlockDelta", dict(at, delta={"toolUse": {"input": p}}))
                for p in pieces(draw, arguments)
            ]
        elif "reasoningText" in block["reasoningContent"]:
            text = block["reasoningContent"]["reasoningText"]
            events += [
                ("contentBlockDelta", dict(at, delta={"reasoningContent": {"text": p}}))
                for p in pieces(draw, text["text"])
            ]
            events.append(
                ("contentBlockDelta", dict(at, delta={"reasoningContent": {"signature": text["signature"]}}))
            )
        else:
            events.append(
                ("contentBlockDelta", dict(at, delta={"reasoningContent": block["reasoningContent"]}))
            )
        events.append(("contentBlockStop", at))
    events.append(("messageStop", {"stopReason": reply["stopReason"]}))
    events.append(("metadata", {"usage": reply["usage"], "metrics": {"latencyMs": 10}}))
    return reply, events


def accumulate(events):
    snapshot, bufs = None, {}
    for name, payload in events:
        snapshot = accumulate_event(event=dict(payload, type=name), current_snapshot=snapshot, json_bufs=bufs)
    return snapshot


@SETTINGS
@given(case=streamed())
def test_streamed_converse_accumulates_to_the_whole_translation(case):
    reply, events = case
    machine = ConverseStreamTranslator(model="llama", message_id="msg_1", stop_sequences=["END"])
    out = []
    for kind, payload in events:
        out += machine.feed(kind, orjson.loads(orjson.dumps(payload)))
    out += machine.finish()
    names = [n for n, _ in out]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    final = accumulate(out)
    whole = to_anthropic_message(reply, model="llama", message_id="msg_1", stop_sequences=["END"])
    assert Message.model_validate(final.to_dict()).to_dict() == Message.model_validate(whole).to_dict()


def test_stream_cut_before_message_stop_is_an_error():
    machine = ConverseStreamTranslator(model="m", message_id="msg_1", stop_sequences=[])
    out = machine.feed("messageStart", {"role": "assistant"})
    out += machine.feed("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hal"}})
    out += machine.finish()
    assert out[-1][0] == "error" and "before messageStop" in out[-1][1]["error"]["message"]


def test_url_images_are_refused_naming_the_block():
    import pytest

    from parley.core.errors import GatewayError

    body = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}],
            }
        ]
    }
    with pytest.raises(GatewayError) as info:
        to_converse_request(body, "meta.llama3-3-70b-instruct-v1:0", [])
    assert info.value.status == 400 and "messages.0.content.0" in info.value.message
