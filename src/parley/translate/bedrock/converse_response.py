"""Amazon Bedrock Converse reply -> Anthropic Message, whole (`to_anthropic_message`) or streamed
(`ConverseStreamTranslator`: one decoded ConverseStream event in, Anthropic SSE events out).

Converse reports usage only at the end of a stream (its `metadata` event, after `messageStop`), so
the Anthropic `message_delta` is held until then and carries every count; `message_start` carries
the local estimate of the input tokens (what a stream cut before the end is billed for). The stop
sequence that fired is not reported by Converse: it is filled in when the request had exactly one.
"""

from __future__ import annotations

from typing import Any

from parley.translate.bedrock.errors import stream_error_event

STOP_REASONS = {
    "end_turn": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "guardrail_intervened": "refusal",
    "content_filtered": "refusal",
    "model_context_window_exceeded": "model_context_window_exceeded",
    "malformed_model_output": "end_turn",
    "malformed_tool_use": "end_turn",
}

Event = tuple[str, dict[str, Any]]


def anthropic_usage(usage: Any) -> dict[str, int]:
    """Converse `usage` in Anthropic terms (its inputTokens exclude cache reads and writes)."""
    usage = usage if isinstance(usage, dict) else {}
    return {
        "input_tokens": int(usage.get("inputTokens") or 0),
        "output_tokens": int(usage.get("outputTokens") or 0),
        "cache_creation_input_tokens": int(usage.get("cacheWriteInputTokens") or 0),
        "cache_read_input_tokens": int(usage.get("cacheReadInputTokens") or 0),
    }


def _stop(reason: Any, stop_sequences: list[str]) -> tuple[str, str | None]:
    stop = STOP_REASONS.get(str(reason), "end_turn")
    sequence = stop_sequences[0] if stop == "stop_sequence" and len(stop_sequences) == 1 else None
    return stop, sequence


def to_anthropic_message(
    reply: dict[str, Any], *, model: str, message_id: str, stop_sequences: list[str]
) -> dict[str, Any]:
    """A Converse response body as an Anthropic Message."""
    output = reply.get("output") or {}
    message = output.get("message") if isinstance(output, dict) else None
    blocks = message.get("content") if isinstance(message, dict) else None
    content = [b for b in (_block(x) for x in blocks or ()) if b is not None]
    stop, sequence = _stop(reply.get("stopReason"), stop_sequences)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": sequence,
        "stop_details": None,
        "usage": anthropic_usage(reply.get("usage")),
    }


def _block(block: Any) -> dict[str, Any] | None:
    if not isinstance(block, dict):
        return None
    if "text" in block:
        return {"type": "text", "text": block["text"]}
    if "toolUse" in block:
        use = block["toolUse"]
        return {
            "type": "tool_use",
            "id": use.get("toolUseId"),
            "name": use.get("name"),
            "input": use.get("input") or {},
        }
    reasoning = block.get("reasoningContent")
    if isinstance(reasoning, dict):
        if "redactedContent" in reasoning:
            return {"type": "redacted_thinking", "data": reasoning["redactedContent"]}
        text = reasoning.get("reasoningText") or {}
        return {"type": "thinking", "thinking": text.get("text", ""), "signature": text.get("signature", "")}
    return None


class ConverseStreamTranslator:
    """ConverseStream events (type, payload) in, Anthropic stream events out."""

    def __init__(
        self, *, model: str, message_id: str, stop_sequences: list[str], input_estimate: int = 0
    ) -> None:
        self.model = model
        self.input_estimate = input_estimate
        self.message_id = message_id
        self.stop_sequences = stop_sequences
        self.started = False
        self.finished = False
        self.index = -1  # Anthropic index of the open block (or the last one)
        self.open_kind: str | None = None
        self.converse_index: int | None = None
        self.stop_reason: Any = None
        self.usage: dict[str, int] | None = None

    def feed(self, kind: str, payload: dict[str, Any]) -> list[Event]:
        if self.finished:
            return []
        out = self._start() if kind != "exception" else []
        if kind == "contentBlockStart":
            out += self._open_for(payload, payload.get("start") or {})
        elif kind == "contentBlockDelta":
            out += self._delta(payload)
        elif kind == "contentBlockStop":
            out += self._close()
        elif kind == "messageStop":
            out += self._close()
            self.stop_reason = payload.get("stopReason") or "end_turn"
            if self.usage is not None:
                out += self._end()
        elif kind == "metadata":
            self.usage = anthropic_usage(payload.get("usage"))
            out += self._end()
        return out

    def fail(self, error_type: str, message: str) -> list[Event]:
        """An exception frame (or a broken stream): the Anthropic `error` event, then nothing."""
        self.finished = True
        return [stream_error_event(error_type, message)]

    def finish(self) -> list[Event]:
        """The upstream ended: close what is open (a stream cut before messageStop is an error)."""
        if self.finished:
            return []
        if self.stop_reason is None:
            return self.fail("api_error", "Amazon Bedrock stream ended before messageStop")
        return self._end()

    @property
    def estimated(self) -> bool:
        return self.usage is None

    def _start(self) -> list[Event]:
        if self.started:
            return []
        self.started = True
        usage = {
            "input_tokens": self.input_estimate,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def _open(self, block: dict[str, Any], converse_index: Any) -> list[Event]:
        out = self._close()
        self.index += 1
        self.open_kind = block["type"]
        self.converse_index = converse_index
        return [
            *out,
            (
                "content_block_start",
                {"type": "content_block_start", "index": self.index, "content_block": block},
            ),
        ]

    def _open_for(self, payload: dict[str, Any], start: dict[str, Any]) -> list[Event]:
        use = start.get("toolUse")
        if isinstance(use, dict):
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": use.get("toolUseId"),
                "name": use.get("name"),
                "input": {},
            }
            return self._open(block, payload.get("contentBlockIndex"))
        return []

    def _close(self) -> list[Event]:
        if self.open_kind is None:
            return []
        self.open_kind = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self.index})]

    def _delta(self, payload: dict[str, Any]) -> list[Event]:
        delta = payload.get("delta") or {}
        at = payload.get("contentBlockIndex")
        out: list[Event] = []
        if "text" in delta:
            out += self._ensure("text", at, {"type": "text", "text": ""})
            out.append(self._d({"type": "text_delta", "text": delta["text"]}))
        elif "toolUse" in delta:
            out += self._ensure("tool_use", at, {"type": "tool_use", "id": "", "name": "", "input": {}})
            out.append(
                self._d({"type": "input_json_delta", "partial_json": delta["toolUse"].get("input", "")})
            )
        elif isinstance(delta.get("reasoningContent"), dict):
            out += self._reasoning(delta["reasoningContent"], at)
        return out

    def _reasoning(self, reasoning: dict[str, Any], at: Any) -> list[Event]:
        if "redactedContent" in reasoning:
            block = {"type": "redacted_thinking", "data": reasoning["redactedContent"]}
            return self._open(block, at) + self._close()
        out = self._ensure("thinking", at, {"type": "thinking", "thinking": "", "signature": ""})
        if "text" in reasoning:
            out.append(self._d({"type": "thinking_delta", "thinking": reasoning["text"]}))
        if "signature" in reasoning:
            out.append(self._d({"type": "signature_delta", "signature": reasoning["signature"]}))
        return out

    def _ensure(self, kind: str, at: Any, block: dict[str, Any]) -> list[Event]:
        if self.open_kind == kind and self.converse_index == at:
            return []
        return self._open(block, at)

    def _d(self, delta: dict[str, Any]) -> Event:
        return "content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta}

    def _end(self) -> list[Event]:
        if self.stop_reason is None:  # metadata before messageStop: wait for it
            return []
        self.finished = True
        stop, sequence = _stop(self.stop_reason, self.stop_sequences)
        usage = self.usage or {"output_tokens": 0}
        return [
            *self._close(),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": sequence, "stop_details": None},
                    "usage": usage,
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
