"""Turn a complete Anthropic Message into the SSE events the real API would stream for it.

Used by the mock model, the fake upstream, and anything that replays a stored reply as a stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from parley.core.sse import encode_event

_WHOLE_BLOCKS = (
    "redacted_thinking",
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "tool_search_tool_result",
    "container_upload",
)


def message_events(message: dict[str, Any], piece: int = 16) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event name, payload) pairs for `message`; text and JSON are split into `piece`-char deltas."""
    usage = dict(message.get("usage") or {})
    start_usage = dict(usage, output_tokens=min(1, usage.get("output_tokens", 1)))
    start = dict(message, content=[], stop_reason=None, stop_sequence=None, usage=start_usage)
    yield "message_start", {"type": "message_start", "message": start}
    for index, block in enumerate(message.get("content") or []):
        yield from _block_events(index, block, piece)
    delta_usage = {"output_tokens": usage.get("output_tokens", 0)}
    for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        if usage.get(name) is not None:
            delta_usage[name] = usage[name]
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {
                "stop_reason": message.get("stop_reason") or "end_turn",
                "stop_sequence": message.get("stop_sequence"),
            },
            "usage": delta_usage,
        },
    )
    yield "message_stop", {"type": "message_stop"}


def _block_events(index: int, block: dict[str, Any], piece: int) -> Iterator[tuple[str, dict[str, Any]]]:
    kind = block.get("type")

    def start(content_block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "content_block_start", {
            "type": "content_block_start",
            "index": index,
            "content_block": content_block,
        }

    def delta(d: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}

    if kind == "text":
        yield start({"type": "text", "text": ""})
        for citation in block.get("citations") or ():
            yield delta({"type": "citations_delta", "citation": citation})
        for part in _split(block.get("text", ""), piece):
            yield delta({"type": "text_delta", "text": part})
    elif kind == "thinking":
        yield start({"type": "thinking", "thinking": "", "signature": ""})
        for part in _split(block.get("thinking", ""), piece):
            yield delta({"type": "thinking_delta", "thinking": part})
        yield delta({"type": "signature_delta", "signature": block.get("signature", "")})
    elif kind in ("tool_use", "server_tool_use", "mcp_tool_use"):
        yield start(dict(block, input={}))
        arguments = orjson.dumps(block.get("input") or {}).decode()
        if arguments != "{}":
            for part in _split(arguments, piece):
                yield delta({"type": "input_json_delta", "partial_json": part})
    elif kind == "compaction":  # the summary arrives in one compaction_delta, as the API sends it
        yield start({"type": "compaction", "content": None})
        yield delta(
            {
                "type": "compaction_delta",
                "content": block.get("content"),
                "encrypted_content": block.get("encrypted_content"),
            }
        )
    else:  # redacted thinking and server tool results arrive whole
        yield start(block)
    yield "content_block_stop", {"type": "content_block_stop", "index": index}


def _split(text: str, piece: int) -> list[str]:
    if not text:
        return []
    return [text[i : i + piece] for i in range(0, len(text), piece)]


def message_frames(message: dict[str, Any], piece: int = 16) -> list[bytes]:
    return [encode_event(name, payload) for name, payload in message_events(message, piece)]
