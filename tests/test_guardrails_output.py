"""`mode: post_call` on a PII guardrail: PII the model writes is masked in the reply (whole and
streamed, split across deltas), while values restored from the request's own placeholders are
not masked again (LiteLLM #28316). Judged by the anthropic SDK against `parley serve` and the
fake upstream."""

from __future__ import annotations

import anthropic
import pytest

from parley.core.sse import encode_event
from parley.filters.guardrails.output import MAX_HOLD, pending_token
from parley.testing.inprocess import anthropic_client, openai_client
from parley.testing.procs import anthropic_deployment, openai_deployment

MASTER = "sk-parley-master-output"
EMAIL = "jane.roe@example.org"  # the user's: masked going in, restored coming back
THEIRS = "bob.smith@corp-mail.example"  # the model's own: masked in the reply
CARD = "4111 1111 1111 1111"
ASK = f"Write to {EMAIL} and say who else to contact."


def gateway_config(fake_upstream) -> dict:
    return {
        "model_list": [
            anthropic_deployment("claude", fake_upstream, model="claude-sonnet-4-5"),
            openai_deployment("gpt", fake_upstream, model="gpt-4o"),
        ],
        "general_settings": {"master_key": MASTER},
        "guardrails": [
            {
                "guardrail_name": "pii",
                "litellm_params": {
                    "guardrail": "parley_pii",
                    "mode": ["pre_call", "post_call"],
                    "default_on": True,
                    "output_parse_pii": True,
                    "pii_entities_config": {
                        "EMAIL_ADDRESS": "MASK",
                        "CREDIT_CARD": "MASK",
                        "US_SSN": "BLOCK",
                    },
                },
            }
        ],
    }


@pytest.fixture(scope="module")
def gw(start_gateway, fake_upstream):
    return start_gateway(gateway_config(fake_upstream))


@pytest.fixture
def claude(gw):
    return anthropic_client(gw, api_key=MASTER, max_retries=0)


def test_whole_reply_masks_the_models_pii_not_the_restored_values(claude, upstream):
    upstream.script(
        {
            "content": [
                {"type": "text", "text": f"Wrote to <EMAIL_1>. Also ask {THEIRS}, card {CARD}."},
                {"type": "tool_use", "id": "toolu_1", "name": "mail", "input": {"to": ["<EMAIL_1>", THEIRS]}},
            ],
            "stop_reason": "tool_use",
        }
    )
    message = claude.messages.create(
        model="claude",
        max_tokens=64,
        messages=[{"role": "user", "content": ASK}],
        tools=[{"name": "mail", "description": "send", "input_schema": {"type": "object"}}],
    )
    assert message.content[0].text == f"Wrote to {EMAIL}. Also ask <EMAIL_ADDRESS>, card <CREDIT_CARD>."
    assert message.content[1].input == {"to": [EMAIL, "<EMAIL_ADDRESS>"]}
    assert EMAIL not in upstream.requests()[-1]["body"]


def test_streamed_reply_masks_a_value_split_across_deltas(claude, upstream):
    pieces_in = [
        "Wrote to <EM",
        "AIL_1>. Also ask bob.sm",
        "ith@corp-mail.exa",
        "mple, card 4111 1111 ",
        "1111 1111 ok",
    ]
    events = [
        ("message_start", {"type": "message_start", "message": _message_start()}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        *[_text(p) for p in pieces_in],
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    upstream.script(
        {
            "raw_chunks": [encode_event(name, data).decode() for name, data in events],
            "content_type": "text/event-stream",
        }
    )
    with claude.messages.stream(
        model="claude", max_tokens=64, messages=[{"role": "user", "content": ASK}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert final.content[0].text == f"Wrote to {EMAIL}. Also ask <EMAIL_ADDRESS>, card <CREDIT_CARD> ok"
    assert "".join(pieces) == final.content[0].text
    assert pieces[0] == "Wrote to "  # streamed: the first text went out before the rest arrived
    assert not any("bob" in p or "4111" in p for p in pieces)


def test_model_output_with_a_blocked_entity_is_refused(claude, upstream):
    upstream.script({"content": [{"type": "text", "text": "Their SSN is 536-22-8726."}]})
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.messages.create(model="claude", max_tokens=32, messages=[{"role": "user", "content": "hi"}])
    assert "US_SSN" in info.value.message and "536-22-8726" not in info.value.message


def test_streamed_reply_with_a_blocked_entity_ends_with_an_error_event(claude, upstream):
    upstream.script({"content": [{"type": "text", "text": "Found it. Their SSN is 536-22-8726, as asked."}]})
    got: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as info,
        claude.messages.stream(
            model="claude", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        for piece in stream.text_stream:
            got.append(piece)
    assert "US_SSN" in str(info.value) and "536-22" not in str(info.value)
    assert "536" not in "".join(got)
    assert "".join(got).startswith("Found it.")


def test_openai_stream_masks_the_models_pii_and_restores_the_users(gw, upstream):
    upstream.script({"content": f"Sent to <EMAIL_1>; cc {THEIRS} please."})
    gpt = openai_client(gw, api_key=MASTER, max_retries=0)
    stream = gpt.chat.completions.create(
        model="gpt", stream=True, messages=[{"role": "user", "content": ASK}]
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(pieces) == f"Sent to {EMAIL}; cc <EMAIL_ADDRESS> please."
    assert EMAIL not in upstream.requests()[-1]["body"]


def test_hold_covers_a_growing_token_and_digit_groups():
    assert pending_token("mail bob.sm") == len("bob.sm")
    assert pending_token("card 4111 1111 ") == len("4111 1111 ")
    assert pending_token("call +1 (212) 555-") == len("+1 (212) 555-")
    assert pending_token("done. ") == 0
    assert pending_token('{"to": ["ab@cd.org", "bob@corp.ex') == len("bob@corp.ex")  # tool input JSON
    assert pending_token("x" * 500) == MAX_HOLD


def _message_start() -> dict:
    return {
        "id": "msg_out",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 1},
    }


def _text(text: str) -> tuple[str, dict]:
    return "content_block_delta", {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": text},
    }
