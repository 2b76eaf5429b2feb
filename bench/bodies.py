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
