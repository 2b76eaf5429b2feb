"""Canned upstream replies and the request bodies the scenarios send."""

from __future__ import annotations

import orjson

ANTHROPIC_MESSAGE = {
    "id": "msg_bench0000000000000001",
    "type": "message",
    "role": "assistant",
    "model": "claude-bench-1",
    "content": [{"type": "text", "text": "Hello from the bench upstream."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 12,
        "output_tokens": 8,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    },
}

OPENAI_COMPLETION = {
    "id": "chatcmpl-bench0001",
    "object": "chat.completion",
    "created": 1760000000,
    "model": "gpt-bench-1",
    "system_fingerprint": None,
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello from the bench upstream.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
}


def sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {orjson.dumps(data).decode()}\n\n"


def anthropic_stream(texts: list[str]) -> str:
    """A complete native Messages stream with one text delta per entry of `texts`."""
    start = dict(
        ANTHROPIC_MESSAGE,
        content=[],
        stop_reason=None,
        usage=dict(ANTHROPIC_MESSAGE["usage"], output_tokens=1),
    )
    parts = [
        sse("message_start", {"type": "message_start", "message": start}),
        sse(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
    ]
    for text in texts:
        parts.append(
            sse(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
            )
        )
    parts += [
        sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(texts)},
            },
        ),
        sse("message_stop", {"type": "message_stop"}),
    ]
    return "".join(parts)


def openai_stream(texts: list[str]) -> str:
    """A complete Chat Completions stream (with a usage chunk) ending in [DONE]."""
    base = {
        "id": "chatcmpl-bench0001",
        "object": "chat.completion.chunk",
        "created": 1760000000,
        "model": "gpt-bench-1",
        "system_fingerprint": None,
    }
    chunks = [
        dict(
            base,
            choices=[
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
        )
    ]
    for text in texts:
        chunks.append(
            dict(
                base,
                choices=[{"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}],
            )
        )
    chunks.append(dict(base, choices=[{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]))
    chunks.append(
        dict(
            base,
            choices=[],
            usage={"prompt_tokens": 12, "completion_tokens": len(texts), "total_tokens": 12 + len(texts)},
        )
    )
    return "".join(f"data: {orjson.dumps(c).decode()}\n\n" for c in chunks) + "data: [DONE]\n\n"


STREAM_TEXTS = [f"word{i} " for i in range(10)]


def small_messages(model: str, stream: bool = False) -> bytes:
    body = {
        "model": model,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Say hello in five words."}],
    }
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def small_chat(model: str, stream: bool = False) -> bytes:
    body = {
        "model": model,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Say hello in five words."}],
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


_TOOLS = [
    "Agent",
    "Bash",
    "Edit",
    "Glob",
    "Grep",
    "Read",
    "Write",
    "Skill",
    "ToolSearch",
    "TodoWrite",
    "WebFetch",
    "NotebookEdit",
]


def _filler(label: str, size: int) -> str:
    line = f"{label}: follow the repository conventions, keep changes small and explain them. "
    return (line * (size // len(line) + 1))[:size]


def claude_code_body(model: str, target_bytes: int = 100_000) -> bytes:
    """A request shaped like Claude Code's (reference Appendix A), padded to about `target_bytes`."""
    tools = [
        {
            "name": name,
            "description": _filler(f"{name} tool", 3000),
            "input_schema": {
                "type": "object",
                "properties": {
                    "command": {"type": "string", "description": _filler("command", 400)},
                    "description": {"type": "string", "description": "what the command does"},
                },
                "required": ["command"],
                "additionalProperties": False,
            },
        }
        for name in _TOOLS
    ]
    body = {
        "model": model,
        "max_tokens": 128000,
        "stream": True,
        "system": [
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
            {"type": "text", "text": _filler("system", 12000), "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": _filler("environment", 3000), "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": "<system-reminder>" + _filler("context", 6000) + "</system-reminder>",
                    },
                    {"type": "text", "text": "say hi"},
                ],
            },
            {"role": "system", "content": "<system-reminder>mid-conversation note</system-reminder>"},
        ],
        "tools": tools,
        "metadata": {
            "user_id": orjson.dumps(
                {"device_id": "d" * 64, "account_uuid": "a" * 36, "session_id": "s" * 36}
            ).decode()
        },
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "medium"},
    }
    raw = orjson.dumps(body)
    pad = target_bytes - len(raw)
    if pad > 0:
        body["messages"][0]["content"][0]["text"] += _filler("more", pad)
    return orjson.dumps(body)


CLAUDE_CODE_HEADERS = {
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,"
    "effort-2025-11-24",
    "x-app": "cli",
    "user-agent": "claude-cli/2.1.328 (external, sdk-cli)",
    "x-claude-code-session-id": "bench-session",
    "x-stainless-lang": "js",
    "x-stainless-timeout": "600",
    "anthropic-dangerous-direct-browser-access": "true",
}


# The guardrails scenario: a PII guardrail a request turns on with `"guardrails": ["pii"]`.
GUARDRAILS = [
    {
        "guardrail_name": "pii",
        "litellm_params": {"guardrail": "parley_pii", "mode": "pre_call", "output_parse_pii": True},
    }
]

PARAGRAPH = (
    "The customer reports that the export job stalls after the third batch when the queue is "
    "under load; retries succeed on the second attempt but the dashboard keeps showing the old "
    "status until the cache expires. We checked the worker pool size, the broker settings and "
    "the database connection limits, and none of them were saturated at the time. "
)
LOG = (
    "2026-11-02T10:14:03Z INFO worker-7 job=export-4412 batch=3 rows=5000 elapsed_ms=812\n"
    "2026-11-02T10:14:05Z WARN worker-7 retrying upstream 10.20.30.40:5432 after timeout\n"
    "2026-11-02T10:14:09Z INFO worker-2 job=export-4413 batch=1 rows=5000 elapsed_ms=640\n"
)
TRACE = (
    'Traceback (most recent call last):\n  File "/srv/app/export.py", line 212, in run\n'
    "    batch = queue.get(timeout=30)\nqueue.Empty\n"
)
ENTITIES = (
    "Reporter: Dana Whitfield <dana.whitfield@example.com>, phone +1 415-555-2671. "
    "Escalation contact: ops-lead@example.org or (212) 555-0147. Billing card on file "
    "4111 1111 1111 1111, refunds to IBAN DE89 3704 0044 0532 0130 00. The client connects "
    "from 203.0.113.45 and 2001:db8::8a2e:370:7334. They pasted their config by mistake: "
    "aws_access_key_id = AKIAIOSFODNN7EXAMPLE and a token ghp_" + "x1Y2z3" * 6 + ". "
    "Second reporter: li.wei@example.net, +44 20 7946 0958. "
)


def guardrail_prompt() -> str:
    """~10 KB shaped like a support ticket (prose, a log, a stack trace) with 12 planted entities."""
    parts = [ENTITIES]
    while sum(len(p) for p in parts) < 10_000:
        parts += [PARAGRAPH, LOG, PARAGRAPH, TRACE]
    return "".join(parts)[:10_240]


def guardrails_messages(model: str, on: bool = True) -> bytes:
    body: dict = {
        "model": model,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": guardrail_prompt()}],
    }
    if on:
        body["guardrails"] = ["pii"]
    return orjson.dumps(body)
