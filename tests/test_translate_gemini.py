"""The Gemini translators on their own: properties over random requests and streams, and the
mappings one by one.

- A random valid Anthropic request (text, images, documents, thinking with signatures, tool calls
  and their results, tools, tool_choice) translates to a body the fake's Gemini request checks
  accept (the checks the fake was validated with against google-genai), with every signature back
  on its part.
- A random Gemini reply, cut into stream chunks the way Gemini streams (text in fragments, a
  signature on the last fragment or on an empty part of its own), translates to events the
  anthropic SDK's own accumulator turns into the same message as the whole reply's translation.
"""

from __future__ import annotations

import base64
import itertools
from typing import Any

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_support import examples
from parley.core.errors import GatewayError
from parley.testing.fake_gemini import Invalid, check, signature_bytes
from parley.translate.gemini.errors import google_error_fields
from parley.translate.gemini.ids import signature_of, thinking_signature, tool_use_id
from parley.translate.gemini.request import to_gemini_request
from parley.translate.gemini.response import to_anthropic_message
from parley.translate.gemini.stream import GeminiStreamTranslator

SETTINGS = settings(max_examples=examples(50), deadline=None, suppress_health_check=[HealthCheck.too_slow])
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
text = st.text(min_size=1, max_size=30)
name = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,12}", fullmatch=True)
signature = st.binary(min_size=1, max_size=64).map(lambda b: base64.b64encode(b).decode())
args = st.dictionaries(
    name, st.one_of(st.integers(-(2**53), 2**53), st.text(max_size=8), st.booleans()), max_size=3
)


@st.composite
def conversation(draw) -> tuple[dict[str, Any], list[str], list[str]]:
    """A valid Messages request, the signatures its tool calls carry and its thinking blocks'
    Gemini signatures (thinking blocks from another model carry signatures that must not go)."""
    messages: list[dict[str, Any]] = []
    signatures: list[str] = []
    thoughts: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        user: list[dict[str, Any]] = [{"type": "text", "text": draw(text)}]
        if draw(st.booleans()):
            user.append(
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
            )
        messages.append({"role": "user", "content": user})
        assistant: list[dict[str, Any]] = []
        if draw(st.booleans()):
            sig = draw(signature)
            ours = draw(st.booleans())
            assistant.append(
                {
                    "type": "thinking",
                    "thinking": draw(text),
                    "signature": thinking_signature(sig) if ours else sig,
                }
            )
            if ours:
                thoughts.append(sig)
        if draw(st.booleans()):
            assistant.append({"type": "text", "text": draw(text)})
        calls = []
        for _ in range(draw(st.integers(0, 2))):
            sig = draw(signature) if not calls else None  # Gemini signs the first call of a step
            calls.append(
                {"type": "tool_use", "id": tool_use_id(sig), "name": draw(name), "input": draw(args)}
            )
            if sig:
                signatures.append(sig)
        assistant += calls
        if not assistant:
            assistant.append({"type": "text", "text": "ok"})
        messages.append({"role": "assistant", "content": assistant})
        if calls:
            results = [
                {
                    "type": "tool_result",
                    "tool_use_id": c["id"],
                    "content": draw(text),
                    "is_error": draw(st.booleans()),
                }
                for c in calls
            ]
            messages.append({"role": "user", "content": results})
    if messages[-1]["role"] == "assistant":
        messages.append({"role": "user", "content": draw(text)})
    body: dict[str, Any] = {"model": "g", "max_tokens": draw(st.integers(1, 9000)), "messages": messages}
    if draw(st.booleans()):
        body["system"] = draw(text)
    if draw(st.booleans()):
        body["tools"] = [{"name": "t1", "input_schema": {"type": "object", "additionalProperties": False}}]
        body["tool_choice"] = draw(
            st.sampled_from(
                [{"type": "auto"}, {"type": "any"}, {"type": "none"}, {"type": "tool", "name": "t1"}]
            )
        )
    if draw(st.booleans()):
        body["thinking"] = {"type": "enabled", "budget_tokens": draw(st.integers(1024, 4096))}
    return body, signatures, thoughts


@SETTINGS
@given(conversation())
def test_random_request_passes_geminis_checks(case):
    body, signatures, thoughts = case
    gemini, _ = to_gemini_request(body)
    issued = {signature_bytes(s) for s in signatures}
    checked = check(gemini, "gemini-3-pro-preview", issued)  # raises Invalid with Gemini's 400 message
    calls = [p for c in checked["contents"] for p in c["parts"] if "functionCall" in p]
    signed = [p["thoughtSignature"] for p in calls if "thoughtSignature" in p]
    assert signed == signatures  # every signature back, on its call, in order
    thought_parts = [p for c in checked["contents"] for p in c["parts"] if p.get("thought")]
    assert [p["thoughtSignature"] for p in thought_parts if "thoughtSignature" in p] == thoughts
    assert checked["contents"][0]["role"] == "user"


# ----------------------------------------------------------------------------- streams


part = st.one_of(
    st.fixed_dictionaries({"text": text, "thought": st.just(True)}, optional={"thoughtSignature": signature}),
    st.fixed_dictionaries({"text": text}, optional={"thoughtSignature": signature}),
    st.fixed_dictionaries(
        {"functionCall": st.fixed_dictionaries({"name": name, "args": args})},
        optional={"thoughtSignature": signature},
    ),
)
usage = st.fixed_dictionaries(
    {"promptTokenCount": st.integers(0, 5000), "candidatesTokenCount": st.integers(0, 5000)},
    optional={"cachedContentTokenCount": st.integers(0, 100), "thoughtsTokenCount": st.integers(0, 900)},
)


@st.composite
def streamed_reply(draw) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    parts = draw(st.lists(part, max_size=6))
    finish = draw(st.sampled_from(["STOP", "MAX_TOKENS", "SAFETY", "RECITATION"]))
    meta = draw(usage)
    whole = {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish}],
        "usageMetadata": meta,
    }
    pieces: list[dict[str, Any]] = []
    for p in parts:
        if "text" not in p:
            pieces.append(p)
            continue
        body = {k: v for k, v in p.items() if k != "thoughtSignature"}
        cuts = sorted(draw(st.sets(st.integers(1, max(1, len(p["text"]) - 1)), max_size=3)))
        bounds = [0, *cuts, len(p["text"])]
        frags = [dict(body, text=p["text"][a:b]) for a, b in itertools.pairwise(bounds) if b > a]
        if "thoughtSignature" in p:
            if draw(st.booleans()):
                frags[-1]["thoughtSignature"] = p["thoughtSignature"]
            else:
                frags.append(dict(body, text="", thoughtSignature=p["thoughtSignature"]))
        pieces += frags
    chunks: list[dict[str, Any]] = []
    while pieces:
        n = draw(st.integers(1, 3))
        chunks.append(
            {
                "candidates": [{"content": {"role": "model", "parts": pieces[:n]}}],
                "usageMetadata": {"promptTokenCount": 1},
            }
        )
        pieces = pieces[n:]
    if not chunks:
        chunks.append({"candidates": [{"content": {"role": "model", "parts": []}}]})
    chunks[-1]["candidates"][0]["finishReason"] = finish
    chunks[-1]["usageMetadata"] = meta
    return whole, chunks


def accumulate(events):
    snapshot, bufs = None, {}
    for event_name, payload in events:
        assert event_name != "error", payload
        snapshot = accumulate_event(
            event=dict(payload, type=event_name), current_snapshot=snapshot, json_bufs=bufs
        )
    return snapshot


def comparable(message: dict[str, Any]) -> dict[str, Any]:
    message = dict(message, id="msg")
    message["content"] = [
        dict(b, id=signature_of(b["id"])) if b["type"] == "tool_use" else b for b in message["content"]
    ]
    return message


@SETTINGS
@given(streamed_reply())
def test_stream_accumulates_to_the_whole_reply(case):
    whole, chunks = case
    machine = GeminiStreamTranslator(model="gemini-x")
    events = [e for c in chunks for e in machine.feed(c)] + machine.finish()
    assert machine.finished and events[-1][0] == "message_stop"
    streamed = accumulate(events).model_dump(exclude_none=True)
    expected = Message.model_validate(to_anthropic_message(whole, "gemini-x"))
    assert comparable(streamed) == comparable(expected.model_dump(exclude_none=True))


def test_stream_cut_before_a_finish_reason_ends_in_an_error():
    machine = GeminiStreamTranslator(model="g", backend="Vertex AI")
    events = machine.feed({"candidates": [{"content": {"parts": [{"text": "half"}]}}]}) + machine.finish()
    assert events[-1][0] == "error" and events[-1][1]["error"]["type"] == "overloaded_error"
    assert events[-1][1]["error"]["message"].startswith("Vertex AI: stream ended")


# ----------------------------------------------------------------------------- mappings


@given(st.binary(min_size=1, max_size=200))
def test_signature_survives_the_tool_use_id(raw):
    sig = base64.b64encode(raw).decode()
    ident = tool_use_id(sig)
    assert signature_of(ident) == sig and set(ident) <= set(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
    )
    assert signature_of(tool_use_id(None)) is None and signature_of("toolu_01abc") is None


def test_request_fields_map_to_gemini():
    body = {
        "model": "g",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
                    },
                    {
                        "type": "document",
                        "title": "Notes",
                        "source": {"type": "text", "media_type": "text/plain", "data": "n1"},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
                    {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}},
                ],
            }
        ],
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "top_k": 5,
        "thinking": {"type": "adaptive"},
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}, "effort": "high"},
        "tools": [
            {"name": "f", "description": "d", "input_schema": {"type": "object"}},
            {"type": "web_search_20250305", "name": "web_search"},
        ],
        "tool_choice": {"type": "tool", "name": "f"},
        "metadata": {"user_id": "u"},
        "service_tier": "auto",
    }
    gemini, dropped = to_gemini_request(body)
    assert gemini["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    assert gemini["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
        {"text": "Notes\n\nn1"},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://x.test/a.png"}},
        {"text": "hi"},
    ]
    assert gemini["generationConfig"] == {
        "maxOutputTokens": 100,
        "temperature": 0.2,
        "topK": 5,
        "stopSequences": ["END"],
        "thinkingConfig": {"thinkingBudget": -1, "includeThoughts": True},
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object"},
    }
    assert gemini["tools"] == [
        {
            "functionDeclarations": [
                {"name": "f", "parametersJsonSchema": {"type": "object"}, "description": "d"}
            ]
        }
    ]
    assert gemini["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}}
    assert dropped == ["service_tier", "tools.web_search", "output_config.effort", "metadata"]


@pytest.mark.parametrize(
    "body, message",
    [
        (
            {"model": "g", "max_tokens": 1, "messages": [], "bogus": 1},
            "bogus: Extra inputs are not permitted",
        ),
        (
            {
                "model": "g",
                "max_tokens": 1,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            "runs on Anthropic's servers and is not available on Gemini",
        ),
        (
            {
                "model": "g",
                "max_tokens": 1,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ],
            },
            "file sources cannot be sent to Gemini",
        ),
    ],
)
def test_requests_gemini_cannot_serve_are_400(body, message):
    with pytest.raises(GatewayError) as e:
        to_gemini_request(body)
    assert e.value.status == 400 and message in e.value.message


@pytest.mark.parametrize(
    "status, error, expected",
    [
        (
            400,
            {
                "code": 400,
                "message": "API key not valid.",
                "status": "INVALID_ARGUMENT",
                "details": [{"reason": "API_KEY_INVALID"}],
            },
            (401, "authentication_error"),
        ),
        (400, {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}, (400, "invalid_request_error")),
        (403, {"code": 403, "message": "no", "status": "PERMISSION_DENIED"}, (403, "permission_error")),
        (404, {"code": 404, "message": "no model", "status": "NOT_FOUND"}, (404, "not_found_error")),
        (429, {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}, (429, "rate_limit_error")),
        (503, {"code": 503, "message": "busy", "status": "UNAVAILABLE"}, (529, "overloaded_error")),
        (504, {"code": 504, "message": "slow", "status": "DEADLINE_EXCEEDED"}, (504, "timeout_error")),
        (500, {"code": 500, "message": "oops", "status": "INTERNAL"}, (500, "api_error")),
    ],
)
def test_google_errors_map_to_anthropic_types(status, error, expected):
    out, kind, message = google_error_fields(status, {"error": error})
    assert (out, kind) == expected and message == error["message"]
    assert google_error_fields(502, b"<html>bad gateway</html>")[:2] == (502, "api_error")


def test_fake_rejects_what_gemini_rejects():
    ok = {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}
    check(ok, "gemini-2.5-flash", set())
    for bad in (
        {"contents": []},
        {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]},
        {"contents": [{"role": "user", "parts": [{"text": "x", "inlineData": {}}]}]},
        {"contents": [{"role": "user", "parts": [{"text": "x"}]}], "generationConfig": {"max_tokens": 5}},
        {"contents": [{"role": "user", "parts": [{"text": "x", "thoughtSignature": "not base64!"}]}]},
    ):
        with pytest.raises(Invalid):
            check(bad, "gemini-2.5-flash", set())
