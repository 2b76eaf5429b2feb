"""A built-in offline model (`mock/<name>`): speaks the Anthropic Messages API in process.

It answers with a short echo of the last user text, streams it word by word when asked, and calls
the first tool when `tool_choice` forces one. It lets `make run` work with no keys and no network.
"""

from __future__ import annotations

import secrets

import orjson

from parley.core.anthropic_stream import message_frames
from parley.core.context import RequestContext
from parley.core.errors import thread_error
from parley.core.stream import FrameSource, UpstreamReply
from parley.core.tokens import count_request_tokens, text_tokens
from parley.providers.anthropic import observe_reply
from parley.providers.base import HubCall


class MockProvider:
    api = "anthropic"

    async def messages(self, ctx: RequestContext, call: HubCall) -> UpstreamReply:
        if call.body.get("thread") is not None:  # parley's thread store is off (no database)
            raise thread_error(
                400,
                "thread_unsupported_request",
                "thread: the mock model holds no threads without a database",
            )
        if call.count_tokens:
            return _json_reply({"input_tokens": count_request_tokens(call.body)})
        message = build_message(call.body, call.target.upstream_model)
        if call.stream:
            return observe_reply(
                ctx,
                UpstreamReply(
                    200,
                    {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"},
                    source=FrameSource(message_frames(message)),
                ),
            )
        return observe_reply(ctx, _json_reply(message))


def _json_reply(payload: dict) -> UpstreamReply:
    return UpstreamReply(200, {"content-type": "application/json"}, body=orjson.dumps(payload))


def build_message(body: dict, model: str) -> dict:
    text = f"Hello from {model}. You said: {last_user_text(body)[:200]}"
    content: list[dict] = []
    stop_reason = "end_turn"
    forced = _forced_tool(body)
    if forced is not None:
        content.append(
            {"type": "tool_use", "id": "toolu_" + secrets.token_hex(12), "name": forced, "input": {}}
        )
        stop_reason = "tool_use"
    else:
        content.append({"type": "text", "text": text})
    output = sum(text_tokens(b.get("text", "")) + (5 if b["type"] == "tool_use" else 0) for b in content)
    return {
        "id": "msg_" + secrets.token_hex(12),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": count_request_tokens(body),
            "output_tokens": max(1, output),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def last_user_text(body: dict, *, skip_textless: bool = True) -> str:
    """The text of the last user turn; with `skip_textless` a turn without text blocks (only tool
    results, say) is passed over for the one before it, else it gives ""."""
    messages = body.get("messages")
    for message in reversed(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [_text_of(b) for b in content if isinstance(b, dict) and b.get("type") in _ECHOED]
            if texts or not skip_textless:
                return " ".join(texts)
    return ""


_ECHOED = ("text", "search_result")  # a search result's text is echoed too (retrieval shows up)


def _text_of(block: dict) -> str:
    if block.get("type") == "search_result":
        inner = block.get("content")
        return " ".join(_text_of(b) for b in inner if isinstance(b, dict)) if isinstance(inner, list) else ""
    text = block.get("text", "")
    return text if isinstance(text, str) else orjson.dumps(text).decode()


def _forced_tool(body: dict) -> str | None:
    """The tool `tool_choice` forces, if any; malformed tools and choices force none."""
    listed = body.get("tools")
    tools = [t for t in listed if isinstance(t, dict) and t.get("name")] if isinstance(listed, list) else []
    choice = body.get("tool_choice") or {}
    if not tools or not isinstance(choice, dict):
        return None
    name = choice.get("name") if choice.get("type") == "tool" else None
    if choice.get("type") == "any":
        name = tools[0]["name"]
    return name if isinstance(name, str) else None
