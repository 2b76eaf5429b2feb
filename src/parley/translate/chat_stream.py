"""Anthropic SSE events -> OpenAI `chat.completion.chunk` objects, one event at a time (pure).

Order out: a role chunk, then content / reasoning_content / tool_call fragments (`index`, `id`,
`name` first, then `arguments` pieces), a complete `thinking_blocks` entry when a thinking block
closes (with its signature), a final chunk with `finish_reason`, and a usage chunk (`choices: []`)
when the client asked for `stream_options.include_usage`. The caller sends `data: [DONE]`.

List entries in deltas carry an `index`, so the openai SDK's accumulator merges them.
"""

from __future__ import annotations

from typing import Any

from parley.translate.chat_errors import openai_stream_error
from parley.translate.chat_request import ChatPlan
from parley.translate.chat_response import chat_usage, completion_id, finish_reason


class _Block:
    __slots__ = ("data", "kind", "ordinal", "signature", "text")

    def __init__(self, kind: str, ordinal: int = 0) -> None:
        self.kind = kind  # "text", "thinking", "redacted", "tool", "json", "other"
        self.ordinal = ordinal  # tool call index or thinking block index
        self.text: list[str] = []
        self.signature = ""
        self.data = ""


class ChatStreamTranslator:
    """Feed Anthropic events in order; get the chat.completion.chunk dicts they produce."""

    def __init__(self, plan: ChatPlan) -> None:
        self.plan = plan
        self.id = completion_id(None)
        self.model = plan.model
        self.usage: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.blocks: dict[Any, _Block] = {}  # by the event's `index`, as the upstream sent it
        self.tools = 0
        self.thinking = 0
        self.citations = 0
        self.finished = False
        self.failed = False

    def feed(self, name: str | None, data: dict[str, Any]) -> list[dict[str, Any]]:
        handler = _HANDLERS.get(name or data.get("type", ""))
        return handler(self, data) if handler is not None else []

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        out = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.plan.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.plan.include_usage:
            out["usage"] = None
        return out

    # ------------------------------------------------------------------------------- handlers

    def _message_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        message = data.get("message") or {}
        self.id = completion_id(message.get("id"))
        self.model = message.get("model") or self.model
        self._merge_usage(message.get("usage"))
        return [self.chunk({"role": "assistant", "content": ""})]

    def _block_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        block = data.get("content_block") or {}
        kind = block.get("type")
        index = data.get("index", len(self.blocks))
        if kind == "text":
            self.blocks[index] = _Block("text")
            return [self.chunk({"content": block["text"]})] if block.get("text") else []
        if kind == "thinking":
            self.blocks[index] = state = _Block("thinking", self.thinking)
            self.thinking += 1
            state.signature = block.get("signature") or ""
            if block.get("thinking"):
                state.text.append(block["thinking"])
                return [self.chunk({"reasoning_content": block["thinking"]})]
            return []
        if kind == "redacted_thinking":
            self.blocks[index] = state = _Block("redacted", self.thinking)
            self.thinking += 1
            state.data = block.get("data") or ""
            return []
        if kind == "tool_use" and block.get("name") == self.plan.json_tool:
            self.blocks[index] = _Block("json")
            return []
        if kind == "tool_use":
            self.blocks[index] = _Block("tool", self.tools)
            self.tools += 1
            return [
                self.chunk(
                    {
                        "tool_calls": [
                            {
                                "index": self.tools - 1,
                                "id": block.get("id"),
                                "type": "function",
                                "function": {"name": block.get("name"), "arguments": ""},
                            }
                        ]
                    }
                )
            ]
        self.blocks[index] = _Block("other")  # server tool use and results: nothing to show
        return []

    def _block_delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        state = self.blocks.get(data.get("index"))
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if state is None:
            return []
        if kind == "text_delta" and delta.get("text"):
            return [self.chunk({"content": delta["text"]})]
        if kind == "thinking_delta" and delta.get("thinking"):
            state.text.append(delta["thinking"])
            return [self.chunk({"reasoning_content": delta["thinking"]})]
        if kind == "signature_delta":
            state.signature = delta.get("signature") or ""
            return []
        if kind == "input_json_delta" and delta.get("partial_json"):
            if state.kind == "json":
                state.text.append(delta["partial_json"])
                return [self.chunk({"content": delta["partial_json"]})]
            if state.kind == "tool":
                state.text.append("")  # arguments have started
                return [
                    self.chunk(
                        {
                            "tool_calls": [
                                {"index": state.ordinal, "function": {"arguments": delta["partial_json"]}}
                            ]
                        }
                    )
                ]
        if kind == "citations_delta" and isinstance(delta.get("citation"), dict):
            self.citations += 1
            entry = dict(delta["citation"], index=self.citations - 1)
            return [self.chunk({"provider_specific_fields": {"citations": [entry]}})]
        return []

    def _block_stop(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        state = self.blocks.get(data.get("index"))
        if state is None:
            return []
        if state.kind == "json" and not state.text:  # a tool input of {} streams no deltas
            return [self.chunk({"content": "{}"})]
        if state.kind == "tool" and not state.text:
            return [self.chunk({"tool_calls": [{"index": state.ordinal, "function": {"arguments": "{}"}}]})]
        if state.kind == "thinking":
            entry = {
                "index": state.ordinal,
                "type": "thinking",
                "thinking": "".join(state.text),
                "signature": state.signature,
            }
        elif state.kind == "redacted":
            entry = {"index": state.ordinal, "type": "redacted_thinking", "data": state.data}
        else:
            return []
        return [self.chunk({"thinking_blocks": [entry]})]

    def _message_delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        self.stop_reason = (data.get("delta") or {}).get("stop_reason") or self.stop_reason
        self._merge_usage(data.get("usage"))
        return []

    def _message_stop(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        if self.finished:
            return []
        self.finished = True
        out = [self.chunk({}, finish_reason(self.stop_reason, self.tools > 0))]
        if self.plan.include_usage:
            out.append(
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.plan.created,
                    "model": self.model,
                    "choices": [],
                    "usage": chat_usage(self.usage),
                }
            )
        return out

    def _error(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        self.failed = True
        error = v if isinstance(v := data.get("error"), dict) else {}
        return [
            openai_stream_error(
                error.get("type") or "api_error", error.get("message") or "upstream stream error"
            )
        ]

    def _merge_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.usage.update({k: v for k, v in usage.items() if v is not None})


_HANDLERS = {
    "message_start": ChatStreamTranslator._message_start,
    "content_block_start": ChatStreamTranslator._block_start,
    "content_block_delta": ChatStreamTranslator._block_delta,
    "content_block_stop": ChatStreamTranslator._block_stop,
    "message_delta": ChatStreamTranslator._message_delta,
    "message_stop": ChatStreamTranslator._message_stop,
    "error": ChatStreamTranslator._error,
}
