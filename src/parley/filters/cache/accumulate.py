"""Rebuild the complete Anthropic Message from its SSE stream, to cache a streamed reply."""

from __future__ import annotations

from typing import Any

import orjson

from parley.core.sse import SSEDecoder


class MessageAccumulator:
    """Feed native Anthropic SSE bytes; `message` is the whole Message once `complete`."""

    __slots__ = ("complete", "decoder", "failed", "message", "partial_json")

    def __init__(self) -> None:
        self.decoder = SSEDecoder()
        self.message: dict[str, Any] | None = None
        self.partial_json: dict[int, str] = {}
        self.complete = False
        self.failed = False

    def feed(self, chunk: bytes) -> None:
        if self.failed:
            return
        for event in self.decoder.feed(chunk):
            if event.event in (None, "ping"):
                continue
            try:
                self._apply(event.event, orjson.loads(event.data))
            except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
                self.failed = True
                return

    def feed_event(self, name: str | None, data: Any) -> None:
        """One event already parsed (the filter chain parses the stream once for every filter)."""
        if self.failed or name in (None, "ping"):
            return
        try:
            self._apply(str(name), data)
        except (KeyError, IndexError, TypeError, AttributeError, orjson.JSONDecodeError):
            self.failed = True

    def _apply(self, name: str, data: dict) -> None:
        if name == "message_start":
            self.message = dict(data["message"], content=[])
        elif name == "content_block_start":
            self.message["content"].append(dict(data["content_block"]))
        elif name == "content_block_delta":
            self._delta(data["index"], data["delta"])
        elif name == "content_block_stop":
            index = data["index"]
            if index in self.partial_json:
                raw = self.partial_json.pop(index)
                self.message["content"][index]["input"] = orjson.loads(raw) if raw else {}
        elif name == "message_delta":
            self.message.update({k: v for k, v in data.get("delta", {}).items()})
            usage = dict(self.message.get("usage") or {})
            usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            self.message["usage"] = usage
        elif name == "message_stop":
            self.complete = self.message is not None
        elif name == "error":
            self.failed = True

    def _delta(self, index: int, delta: dict) -> None:
        block = self.message["content"][index]
        kind = delta["type"]
        if kind == "text_delta":
            block["text"] = block.get("text", "") + delta["text"]
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta["thinking"]
        elif kind == "signature_delta":
            block["signature"] = delta["signature"]
        elif kind == "input_json_delta":
            self.partial_json[index] = self.partial_json.get(index, "") + delta["partial_json"]
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(delta["citation"])
        else:
            self.failed = True  # a delta we cannot rebuild: do not cache
