"""Rebuild the complete Anthropic Message from its SSE stream, to cache a streamed reply."""

from __future__ import annotations

from typing import Any

import orjson


def json_message(body: bytes | None) -> dict[str, Any] | None:
    """The Message of a whole (not streamed) reply body, or None when it is not one."""
    if not body:
        return None
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return message if isinstance(message, dict) and message.get("type") == "message" else None


class MessageAccumulator:
    """Feed parsed Anthropic stream events; `message` is the whole Message once `complete`."""

    __slots__ = ("complete", "failed", "message", "partial_json")

    def __init__(self) -> None:
        self.message: dict[str, Any] | None = None
        self.partial_json: dict[int, str] = {}
        self.complete = False
        self.failed = False

    def feed_event(self, name: str | None, data: Any) -> None:
        """One event already parsed (the filter chain parses the stream once for every filter)."""
        if self.failed or name in (None, "ping"):
            return
        try:
            self._apply(str(name), data)
        except (KeyError, IndexError, TypeError, AttributeError, orjson.JSONDecodeError):
            self.failed = True

    def _apply(self, name: str, data: dict[str, Any]) -> None:
        if name == "message_start":
            self.message = dict(data["message"], content=[])
            return
        message = self.message
        if message is None:
            raise KeyError("message_start")  # events before the message: not cacheable
        if name == "content_block_start":
            message["content"].append(dict(data["content_block"]))
        elif name == "content_block_delta":
            self._delta(message, data["index"], data["delta"])
        elif name == "content_block_stop":
            index = data["index"]
            if index in self.partial_json:
                raw = self.partial_json.pop(index)
                message["content"][index]["input"] = orjson.loads(raw) if raw else {}
        elif name == "message_delta":
            message.update(dict(data.get("delta", {}).items()))
            usage = dict(message.get("usage") or {})
            usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            message["usage"] = usage
        elif name == "message_stop":
            self.complete = True
        elif name == "error":
            self.failed = True

    def _delta(self, message: dict[str, Any], index: int, delta: dict[str, Any]) -> None:
        block = message["content"][index]
        kind = delta["type"]
        if kind == "text_delta":
            block["text"] = block.get("text", "") + delta["text"]
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta["thinking"]
        elif kind == "signature_delta":
            block["signature"] = delta["signature"]
        elif kind == "input_json_delta":
            self.partial_json[index] = self.partial_json.get(index, "") + delta["partial_json"]
        elif kind == "compaction_delta":
            block["content"] = delta.get("content")
            block["encrypted_content"] = delta.get("encrypted_content")
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(delta["citation"])
        else:
            self.failed = True  # a delta we cannot rebuild: do not cache
