"""The guardrail engines without a server: recognizers (true and false positives), config
validation, and the streamed restore and content hold-back under any split of the stream."""

from __future__ import annotations

import itertools
from collections import Counter

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from parley.config import ConfigError, build_config
from parley.config.guardrails import PII_ENTITIES, GuardrailSpec, Keyword
from parley.filters.guardrails.content import ContentBlocked, ContentPolicy
from parley.filters.guardrails.filter import ContentGate, RestoreGate
from parley.filters.guardrails.mask import PLACEHOLDER, PiiMasker, Vault
from parley.filters.guardrails.pii import PiiAnalyzer
from parley.filters.guardrails.stream import StreamEditor
from parley.pipeline.filter import StreamEvent

ANALYZER = PiiAnalyzer(PII_ENTITIES, (), ("US", "GB"))

FOUND = {
    "EMAIL_ADDRESS": ["jane.roe@example.org", "a+b@mail.co.uk"],
    "PHONE_NUMBER": ["+1 415-555-2671", "(415) 555-0132", "+44 20 7946 0958"],
    "CREDIT_CARD": ["4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005"],
    "IBAN_CODE": ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432"],
    "IP_ADDRESS": ["192.168.1.20", "2001:db8::8a2e:370:7334"],
    "US_SSN": ["123-45-6789"],
    "ANTHROPIC_API_KEY": ["sk-ant-api03-" + "a1B2" * 10],
    "OPENAI_API_KEY": ["sk-proj-" + "Zx9" * 10],
    "AWS_ACCESS_KEY": ["AKIAIOSFODNN7EXAMPLE"],
    "GITHUB_TOKEN": ["ghp_" + "a" * 36],
    "SLACK_TOKEN": ["xoxb-123456789012-abcdefghij"],
    "GOOGLE_API_KEY": ["AIza" + "B" * 35],
    "JWT": ["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"],
    "PRIVATE_KEY": ["-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"],
}

NOT_FOUND = [
    "4111 1111 1111 1112",  # fails the Luhn check
    "DE89 3704 0044 0532 0130 01",  # fails the IBAN check
    "666-12-3456",  # never issued as an SSN
    "version 1.2.3.4.5 and 999.1.1.1",
    "the meeting is 2024-05-06 at 10:30:00",
    "call 555-0000",  # too short to be a valid number
    "order #12345678 shipped",
    "sk-short",
    "def f(a, b): return a::b",
    "Dear Dan, please submit the form.",
]


@pytest.mark.parametrize(("entity", "value"), [(e, v) for e, vs in FOUND.items() for v in vs])
def test_recognizers_find_each_entity(entity, value):
    text = f"note: {value} end"
    found = ANALYZER.analyze(text)
    assert [(text[f.start : f.end], f.entity) for f in found] == [(value, entity)]


@pytest.mark.parametrize("text", NOT_FOUND)
def test_recognizers_leave_lookalikes_alone(text):
    assert ANALYZER.analyze(text) == []


def test_aws_secret_key_needs_its_name():
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    text = f"aws_secret_access_key = {secret}"
    assert [text[f.start : f.end] for f in ANALYZER.analyze(text)] == [secret]
    assert ANALYZER.analyze(f"hash {secret}") == []


def test_custom_pattern_and_actions():
    doc = _doc(
        {
            "guardrail": "parley_pii",
            "pii_entities_config": {"EMAIL_ADDRESS": "REDACT", "US_SSN": "BLOCK"},
            "patterns": [{"name": "EMPLOYEE_ID", "pattern": r"EMP-\d{6}", "action": "MASK"}],
        }
    )
    spec = build_config(doc, "t").guardrails[0]
    masker = PiiMasker(
        spec.name, PiiAnalyzer(frozenset(spec.entities), spec.patterns, ("US",)), dict(spec.entities)
    )
    tally: Counter[str] = Counter()
    vault = Vault()
    assert masker.apply("EMP-123456 mails x@y.io", vault, tally) == "<EMPLOYEE_ID_1> mails [REDACTED]"
    assert tally == Counter({"mask:EMPLOYEE_ID": 1, "redact:EMAIL_ADDRESS": 1})
    with pytest.raises(Exception, match="US_SSN") as info:
        masker.apply("ssn 123-45-6789", vault, tally)
    assert "123-45-6789" not in str(info.value)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"guardrail": "nope"}, "guardrail: must be one of"),
        ({"guardrail": "parley_pii", "mode": "sometimes"}, "mode: must be one of"),
        ({"guardrail": "parley_pii", "pii_entities_config": {"EMAIL": "MASK"}}, "entities parley_pii knows"),
        ({"guardrail": "parley_pii", "pii_entities_config": {"EMAIL_ADDRESS": "HIDE"}}, "MASK, REDACT"),
        ({"guardrail": "content_filter"}, "needs blocked_words"),
        ({"guardrail": "content_filter", "patterns": [{"pattern": "("}]}, "valid regex"),
        ({"guardrail": "presidio", "pii_entities_config": {"PERSON": "MASK"}}, "entities presidio knows"),
        ({"guardrail": "prompt_injection", "mode": ["pre_call", "post_call"]}, "it screens requests"),
        ({"guardrail": "parley_pii", "default_on": "yes"}, "default_on: must be true or false"),
    ],
)
def test_config_errors_name_the_field(params, message):
    with pytest.raises(ConfigError, match=message):
        build_config(_doc(params), "cfg.yaml")


def test_config_reports_unknown_keys_and_duplicates():
    doc = _doc({"guardrail": "prompt_injection", "api_base": "http://x", "colour": 1})
    assert build_config(doc, "t").ignored == [
        "guardrails[0].litellm_params.api_base (LiteLLM setting parley does not support)",
        "guardrails[0].litellm_params.colour (unknown key)",
    ]
    doc["guardrails"].append(doc["guardrails"][0])
    with pytest.raises(ConfigError, match="used twice"):
        build_config(doc, "t")


# streams: restore and hold-back under any split

FILLER = st.text(alphabet="ab <>_EMIL1.,\n", max_size=12)
VALUES = [v for e, vs in FOUND.items() if e != "PRIVATE_KEY" for v in vs]


@st.composite
def planted(draw):
    parts = [draw(FILLER)]
    for _ in range(draw(st.integers(1, 5))):
        parts += [" ", draw(st.sampled_from(VALUES)), " ", draw(FILLER)]
    return "".join(parts)


def _split(draw, text: str) -> list[str]:
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), text=planted())
def test_mask_then_streamed_restore_is_the_original_under_any_split(data, text):
    assume(not PLACEHOLDER.search(text))
    masker = PiiMasker("pii", ANALYZER, dict.fromkeys(PII_ENTITIES, "MASK"))
    vault = Vault()
    masked = masker.apply(text, vault, Counter())
    for value in vault.originals.values():
        assert value not in masked
    editor = StreamEditor("anthropic", RestoreGate(vault))
    out = []
    for piece in _split(data.draw, masked):
        for event in editor.on_event(_delta(piece)):
            out.append(event.data["delta"]["text"])
    stop = editor.on_event(StreamEvent("content_block_stop", {"type": "content_block_stop", "index": 0}, ""))
    out += [e.data["delta"]["text"] for e in stop if e.name == "content_block_delta"]
    assert "".join(out) == text
    assert all(out)  # no empty deltas are sent


@settings(max_examples=200, deadline=None)
@given(data=st.data(), text=planted())
def test_openai_tool_arguments_restore_as_valid_json_under_any_split(data, text):
    assume(not PLACEHOLDER.search(text))
    vault = Vault()
    masked = PiiMasker("pii", ANALYZER, dict.fromkeys(PII_ENTITIES, "MASK")).apply(text, vault, Counter())
    arguments = orjson.dumps({"body": masked}).decode()
    editor = StreamEditor("openai", RestoreGate(vault))
    out = []
    for piece in _split(data.draw, arguments):
        chunk = {
            "id": "c",
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}}
            ],
        }
        for event in editor.on_event(StreamEvent(None, chunk, "")):
            out.append(event.data["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"])
    for event in editor.on_event(StreamEvent(None, None, "[DONE]")):
        if event.data is not None:
            out.append(event.data["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"])
    assert orjson.loads("".join(out)) == {"body": text}


@settings(max_examples=200, deadline=None)
@given(data=st.data(), before=st.text(alphabet="ab .", max_size=20))
def test_blocked_word_is_caught_before_any_of_it_is_sent(data, before):
    editor = _word_filter("nightshade")
    text = before + " the NightShade plan"
    sent = []
    with pytest.raises(ContentBlocked):
        for piece in _split(data.draw, text):
            sent += [e.data["delta"]["text"] for e in editor.on_event(_delta(piece))]
        editor.finish()
    assert len("".join(sent)) <= text.index("NightShade")  # no part of the word went out


def test_words_that_only_start_like_a_blocked_word_pass():
    editor = _word_filter("bomb")
    out = []
    for piece in ["a bom", "bastic speech", " about bombs"]:
        out += [e.data["delta"]["text"] for e in editor.on_event(_delta(piece))]
    out += [e.data["delta"]["text"] for e in editor.finish()]
    assert "".join(out) == "a bombastic speech about bombs"


def test_request_walk_covers_every_text_slot_but_thinking():
    from parley.filters.guardrails.walk import request_texts

    body = {
        "system": [{"type": "text", "text": "s x@y.io"}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "t x@y.io"},
                    {"type": "document", "source": {"type": "text", "data": "d x@y.io"}},
                    {
                        "type": "search_result",
                        "source": "u",
                        "title": "t",
                        "content": [{"type": "text", "text": "r x@y.io"}],
                    },
                    {"type": "image", "source": {"type": "base64", "data": "x@y.io"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "k x@y.io", "signature": "s"},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": ["x@y.io"]}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "text", "text": "o x@y.io"}],
                    }
                ],
            },
        ],
    }
    seen = []
    request_texts(
        "anthropic", "/v1/messages", body, lambda text, source, js: seen.append((source, text)) or text
    )
    assert seen == [
        ("system", "s x@y.io"),
        ("user", "t x@y.io"),
        ("user", "d x@y.io"),
        ("user", "r x@y.io"),
        ("assistant", "x@y.io"),
        ("tool", "o x@y.io"),
    ]


def test_text_in_a_block_start_is_restored():
    vault = Vault()
    token = vault.placeholder("EMAIL_ADDRESS", "a@b.io")
    editor = StreamEditor("anthropic", RestoreGate(vault))
    data = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": f"to {token}"},
    }
    (event,) = editor.on_event(StreamEvent("content_block_start", data, ""))
    assert event.data["content_block"]["text"] == "to a@b.io"


def _word_filter(word: str) -> StreamEditor:
    """A streamed reply's editor for an output content filter blocking `word`."""
    keyword = Keyword(word, "block", "blocked_words[0]")
    spec = GuardrailSpec("c", "content_filter", "content", frozenset({"post_call"}), keywords=(keyword,))
    return StreamEditor("anthropic", ContentGate([ContentPolicy(spec)], lambda name: Counter()))


def _delta(text: str) -> StreamEvent:
    data = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
    return StreamEvent("content_block_delta", data, "")


def _doc(params: dict) -> dict:
    return {"model_list": [], "guardrails": [{"guardrail_name": "g", "litellm_params": params}]}


def _confusion(attacks: list[str], benign: list[str]) -> tuple[int, int]:
    from parley.filters.guardrails.injection import score

    caught = sum(score(text).score >= 1.0 for text in attacks)
    false_alarms = sum(score(text).score >= 1.0 for text in benign)
    return caught, false_alarms


def test_injection_heuristic_on_the_labelled_sample():
    """The numbers docs/guardrails.md publishes: on the sample the rules were tuned on, and on the
    held-out lists written afterwards (where a phrase list shows its limits)."""
    from injection_sample import ATTACKS, BENIGN, HELD_OUT_ATTACKS, HELD_OUT_BENIGN

    caught, false_alarms = _confusion(ATTACKS, BENIGN)
    assert (caught, false_alarms) == (38, 0), "update docs/guardrails.md with the new numbers"
    caught, false_alarms = _confusion(HELD_OUT_ATTACKS, HELD_OUT_BENIGN)
    assert (caught, false_alarms) == (3, 0), "update docs/guardrails.md with the new numbers"
