"""Anthropic Message -> OpenAI `chat.completion` (pure; no I/O).

Text blocks join into `content`; thinking goes to `reasoning_content` (text) and `thinking_blocks`
(with signatures, so the client can send them back); tool_use blocks become `tool_calls` with
JSON-string arguments, except the forced JSON-output tool, whose input becomes the content.
"""

from __future__ import annotations

from typing import Any

import orjson

from parley.translate.chat_request import ChatPlan

FINISH_REASON = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def completion_id(message_id: Any) -> str:
    return "chatcmpl-" + (message_id if isinstance(message_id, str) and message_id else "parley")


def finish_reason(stop_reason: Any, has_tool_calls: bool) -> str:
    reason = FINISH_REASON.get(stop_reason, "stop")
    if reason == "tool_calls" and not has_tool_calls:
        return "stop"  # only the JSON-output tool was called
    return reason


def chat_usage(usage: Any) -> dict[str, Any]:
    """OpenAI usage from Anthropic usage: the prompt counts every input token, cached or not."""
    usage = usage if isinstance(usage, dict) else {}
    fresh = usage.get("input_tokens") or 0
    read = usage.get("cache_read_input_tokens") or 0
    written = usage.get("cache_creation_input_tokens") or 0
    output = usage.get("output_tokens") or 0
    prompt = fresh + read + written
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": read},
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
    }
    details = usage.get("output_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("thinking_tokens"), int):
        out["completion_tokens_details"] = {"reasoning_tokens": details["thinking_tokens"]}
    return out


def thinking_entry(block: dict[str, Any]) -> dict[str, Any] | None:
    if block.get("type") == "thinking":
        return {
            "type": "thinking",
            "thinking": block.get("thinking") or "",
            "signature": block.get("signature") or "",
        }
    if block.get("type") == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.get("data") or ""}
    return None


def tool_call(block: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": block.get("id"),
        "type": "function",
        "function": {"name": block.get("name"), "arguments": orjson.dumps(block.get("input") or {}).decode()},
    }


def to_chat_completion(message: dict[str, Any], plan: ChatPlan) -> dict[str, Any]:
    """The `chat.completion` object for an Anthropic Message."""
    texts: list[str] = []
    reasoning: list[str] = []
    thinking_blocks: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    citations: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
            citations.extend(block.get("citations") or ())
        elif kind in ("thinking", "redacted_thinking"):
            entry = thinking_entry(block)
            if entry is not None:  # never None for these two kinds
                thinking_blocks.append(entry)
            if kind == "thinking" and block.get("thinking"):
                reasoning.append(block["thinking"])
        elif kind == "tool_use":
            if block.get("name") == plan.json_tool:
                texts.append(orjson.dumps(block.get("input") or {}).decode())
            else:
                tool_calls.append(tool_call(block))
    chat_message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": None,
    }
    if tool_calls:
        chat_message["tool_calls"] = tool_calls
    if reasoning:
        chat_message["reasoning_content"] = "".join(reasoning)
    if thinking_blocks:
        chat_message["thinking_blocks"] = thinking_blocks
    if citations:
        chat_message["provider_specific_fields"] = {"citations": citations}
    return {
        "id": completion_id(message.get("id")),
        "object": "chat.completion",
        "created": plan.created,
        "model": message.get("model") or plan.model,
        "choices": [
            {
                "index": 0,
                "message": chat_message,
                "logprobs": None,
                "finish_reason": finish_reason(message.get("stop_reason"), bool(tool_calls)),
            }
        ],
        "usage": chat_usage(message.get("usage")),
    }
