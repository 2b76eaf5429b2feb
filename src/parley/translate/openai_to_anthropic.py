"""OpenAI `chat.completion` -> Anthropic `Message` (reference §8.3), shared with the stream.

Ids are derived from the upstream's (`chatcmpl-x` -> `msg_chatcmpl-x`, `call_y` -> `toolu_call_y`) so
the streamed and whole translations of one reply agree and a tool round trip keeps its id: the
client echoes `toolu_call_y` back and the backend sees that same id in its history.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from typing import Any

import orjson

from parley.core.tokens import text_tokens

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


def anthropic_id(prefix: str, upstream_id: Any) -> str:
    """`prefix` + the upstream id (made id-safe), or a fresh random id when there is none."""
    if not isinstance(upstream_id, str) or not upstream_id:
        return prefix + secrets.token_hex(12)
    if upstream_id.startswith(prefix):
        return upstream_id
    return prefix + _UNSAFE_ID.sub("_", upstream_id)


def parse_arguments(arguments: Any) -> tuple[dict[str, Any], bool]:
    """Tool-call arguments as an input object; False when they were not a JSON object."""
    if isinstance(arguments, dict):
        return arguments, True
    if not isinstance(arguments, str) or not arguments.strip():
        return {}, True
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}, False
    return (value, True) if isinstance(value, dict) else ({}, False)


def stop_reason(
    finish_reason: Any, *, has_tool_use: bool, refused: bool, matched: Any, stop_sequences: Iterable[str]
) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) for an OpenAI finish_reason.

    `matched` is the stop string a server reports in `choice.stop_reason` (vLLM does); servers
    that finish with "stop" while returning tool calls (Ollama, llama.cpp) still mean tool_use.
    """
    if refused or finish_reason == "content_filter":
        return "refusal", None
    if finish_reason == "length":
        return "max_tokens", None
    if has_tool_use or finish_reason in ("tool_calls", "function_call"):
        return "tool_use", None
    if isinstance(matched, str) and matched in set(stop_sequences):
        return "stop_sequence", matched
    return "end_turn", None


def anthropic_usage(usage: Any) -> dict[str, int] | None:
    """Anthropic usage from OpenAI usage, with cached prompt tokens split out; None if absent."""
    if not isinstance(usage, dict) or not isinstance(usage.get("prompt_tokens"), int):
        return None
    details = v if isinstance(v := usage.get("prompt_tokens_details"), dict) else {}
    cached = details.get("cached_tokens") or 0
    written = details.get("cache_write_tokens") or 0
    return {
        "input_tokens": max(0, usage["prompt_tokens"] - cached - written),
        "output_tokens": int(usage.get("completion_tokens") or 0),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
    }


def estimated_usage(
    input_tokens: int, generated: str, *, pieces: int = 0, finish_reason: Any = None, max_tokens: Any = None
) -> dict[str, int]:
    """Usage for a server that reported none (llama.cpp, Ollama, some proxies). Output tokens: all of
    `max_tokens` when the server stopped for length (it generated exactly that many); otherwise the
    larger of the streamed pieces (these servers send one token per chunk) and four characters a
    token. Marked estimated by the caller."""
    output = max(pieces, text_tokens(generated))
    if finish_reason == "length" and isinstance(max_tokens, int) and max_tokens > 0:
        output = max_tokens
    return {
        "input_tokens": input_tokens,
        "output_tokens": output,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def reported_model(payload: dict[str, Any], fallback: str) -> str:
    """The reply's `model`: the model the backend says answered, else the deployment's upstream
    model (the rule for every path: docs/compatibility.md)."""
    model = payload.get("model")
    return model if isinstance(model, str) and model else fallback


def reasoning_text(message: dict[str, Any]) -> str:
    """The reasoning a server returned: `reasoning_content` (DeepSeek, older vLLM) or `reasoning`."""
    for name in ("reasoning_content", "reasoning"):
        value = message.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def to_anthropic_message(
    completion: dict[str, Any],
    *,
    model: str,
    stop_sequences: Iterable[str] = (),
    input_estimate: int = 0,
    max_tokens: Any = None,
) -> tuple[dict[str, Any], list[str]]:
    """The Anthropic Message for `completion`, and notes: "usage_estimated",
    "invalid_tool_arguments:<toolu id>"."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = v if isinstance(v := choice.get("message"), dict) else {}
    content: list[dict[str, Any]] = []
    notes: list[str] = []
    generated: list[str] = []
    thinking = reasoning_text(message)
    if thinking:
        content.append({"type": "thinking", "thinking": thinking, "signature": ""})
        generated.append(thinking)
    text = message.get("content")
    if isinstance(text, list):  # a few servers return content parts
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
        generated.append(text)
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        content.append({"type": "text", "text": refusal})
        generated.append(refusal)
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        tool_id = anthropic_id("toolu_", call.get("id"))
        arguments = function.get("arguments")
        value, ok = parse_arguments(arguments)
        if not ok:
            notes.append("invalid_tool_arguments:" + tool_id)
        content.append(
            {"type": "tool_use", "id": tool_id, "name": str(function.get("name") or ""), "input": value}
        )
        generated.append(arguments if isinstance(arguments, str) else "")
    reason, sequence = stop_reason(
        choice.get("finish_reason"),
        has_tool_use=any(b["type"] == "tool_use" for b in content),
        refused=bool(refusal),
        matched=choice.get("stop_reason"),
        stop_sequences=stop_sequences,
    )
    usage = anthropic_usage(completion.get("usage"))
    if usage is None:
        usage = estimated_usage(
            input_estimate,
            "".join(generated),
            finish_reason=choice.get("finish_reason"),
            max_tokens=max_tokens,
        )
        notes.append("usage_estimated")
    return {
        "id": anthropic_id("msg_", completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": reported_model(completion, model),
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "stop_details": None,
        "usage": usage,
    }, notes
