"""The request scenarios: what each sends, where, and what the upstream-direct baseline is."""

from __future__ import annotations

from dataclasses import dataclass, field

import bodies
from upstreams import Upstream

ANTHROPIC_HEADERS = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
OPENAI_HEADERS = {"content-type": "application/json"}


@dataclass
class Scenario:
    name: str
    path: str  # on the gateway
    body: bytes
    headers: dict[str, str]
    direct_url: str  # the upstream endpoint the gateway ends up calling
    direct_body: bytes
    direct_headers: dict[str, str]
    stream: bool = False
    skip_when: dict[int, str] = field(default_factory=dict)  # gateway status -> meaning
    bare: bool = False  # the bare forwarder can serve it (native Anthropic paths only)


def scenarios(up: Upstream) -> list[Scenario]:
    key = {"x-api-key": "sk-bench-upstream"}
    native = bodies.small_messages("bench-native")
    stream = bodies.small_messages("bench-sse", stream=True)
    big = bodies.claude_code_body("bench-sse")
    cc_headers = dict(ANTHROPIC_HEADERS, **bodies.CLAUDE_CODE_HEADERS)
    return [
        Scenario(
            "native",
            "/v1/messages",
            native,
            ANTHROPIC_HEADERS,
            up.anthropic + "/v1/messages",
            native,
            dict(ANTHROPIC_HEADERS, **key),
            bare=True,
        ),
        Scenario(
            "native-stream",
            "/v1/messages",
            stream,
            ANTHROPIC_HEADERS,
            up.anthropic_sse + "/v1/messages",
            stream,
            dict(ANTHROPIC_HEADERS, **key),
            stream=True,
            bare=True,
        ),
        Scenario(
            "claude-code-100KB",
            "/v1/messages?beta=true",
            big,
            cc_headers,
            up.anthropic_sse + "/v1/messages?beta=true",
            big,
            dict(cc_headers, **key),
            stream=True,
            bare=True,
        ),
        Scenario(
            "guardrails-10KB",
            "/v1/messages",
            bodies.guardrails_messages("bench-native"),
            ANTHROPIC_HEADERS,
            up.anthropic + "/v1/messages",
            bodies.guardrails_messages("bench-native", on=False),
            dict(ANTHROPIC_HEADERS, **key),
            skip_when={400: "this build has no guardrails (400 on the guardrails field)"},
        ),
        Scenario(
            "messages→openai",
            "/v1/messages",
            bodies.small_messages("bench-openai"),
            ANTHROPIC_HEADERS,
            up.openai + "/chat/completions",
            bodies.small_chat("gpt-bench-1"),
            dict(OPENAI_HEADERS, authorization="Bearer sk-bench-upstream"),
            skip_when={400: "the Anthropic→OpenAI bridge is not in this build (400 no translation)"},
        ),
        Scenario(
            "chat→anthropic",
            "/v1/chat/completions",
            bodies.small_chat("bench-native"),
            OPENAI_HEADERS,
            up.anthropic + "/v1/messages",
            native,
            dict(ANTHROPIC_HEADERS, **key),
            skip_when={404: "/v1/chat/completions is not in this build (404)"},
        ),
    ]


def slow_stream_body() -> bytes:
    return bodies.small_messages("bench-slow", stream=True)


def fast_stream_body() -> bytes:
    return bodies.small_messages("bench-fast", stream=True)
