"""Gemini `streamGenerateContent?alt=sse` chunks -> Anthropic SSE events, incrementally.

Each chunk is a partial `GenerateContentResponse`: new parts, and on the last one the finish
reason and the final usage. Text and thought parts extend the open block of their kind; a
`thoughtSignature` on a thought becomes the open thinking block's `signature_delta`; a function
call arrives whole and becomes one `tool_use` block. A stream that ends without a finish reason
ends with an `error` event (the client must not take it as whole).

Same interface as the OpenAI stream translator (`feed`, `finish`, `finished`, `estimated`,
`notes`), so `TranslatingSource` drives both.
"""

from __future__ import annotations

from typing import Any

from parley.core.tokens import text_tokens
from parley.translate.gemini.errors import google_error_fields
from parley.translate.gemini.response import (
    anthropic_usage,
    first_candidate,
    part_blocks,
    stop_reason,
    tool_arguments,
)

Event = tuple[str, dict[str, Any]]


class GeminiStreamTranslator:
    def __init__(self, *, model: str, input_estimate: int = 0, backend: str = "Gemini") -> None:
        self.model = model
        self.input_estimate = input_estimate
        self.backend = backend
        self.started = False
        self.finished = False
        self.estimated = False
        self.notes: list[str] = []
        self._index = 0
        self._open: str | None = None  # "text" or "thinking"
        self._signed = False  # the open thinking block has its signature
        self._used_tools = False
        self._finish: str | None = None
        self._usage: Any = None
        self._generated: list[str] = []

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        if self.finished:
            return []
        out: list[Event] = []
        if "error" in chunk:
            return self._fail(chunk)
        if not self.started:
            out.append(self._message_start(chunk))
        if chunk.get("usageMetadata") is not None:
            self._usage = chunk["usageMetadata"]
        candidate = first_candidate(chunk)
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else ():
            for block in part_blocks(part):
                self._block(block, out)
        if candidate.get("finishReason"):
            self._finish = candidate["finishReason"]
        feedback = chunk.get("promptFeedback")
        if not candidate and isinstance(feedback, dict) and feedback.get("blockReason"):
            self._finish = "SAFETY"
        return out

    def finish(self, *, done: bool = True) -> list[Event]:
        """Close the message; the upstream has ended (`done` is unused: Gemini sends no [DONE])."""
        if self.finished:
            return []
        out: list[Event] = []
        if not self.started:
            out.append(self._message_start({}))
        if self._finish is None:
            return out + self._fail(
                {"error": {"status": "UNAVAILABLE", "message": "stream ended before a finish reason"}}
            )
        self._close(out)
        usage = self._final_usage()
        out.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": stop_reason(self._finish, self._used_tools),
                        "stop_sequence": None,
                    },
                    "usage": usage,
                },
            )
        )
        out.append(("message_stop", {"type": "message_stop"}))
        self.finished = True
        return out

    def _final_usage(self) -> dict[str, int]:
        if self._usage is not None:
            return anthropic_usage(self._usage)
        self.estimated = True
        self.notes.append("usage_estimated")
        return {
            "input_tokens": self.input_estimate,
            "output_tokens": sum(text_tokens(t) for t in self._generated),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }

    def _block(self, block: dict[str, Any], out: list[Event]) -> None:
        kind = block["type"]
        if kind == "text":
            if not block["text"]:
                return
            if self._open != "text":
                self._start({"type": "text", "text": ""}, "text", out)
            self._generated.append(block["text"])
            out.append(self._delta({"type": "text_delta", "text": block["text"]}))
        elif kind == "thinking":
            self._thinking(block, out)
        else:  # a whole tool call
            self._close(out)
            self._used_tools = True
            self._start(dict(block, input={}), "tool", out)
            arguments = tool_arguments(block)
            self._generated.append(arguments)
            if arguments != "{}":
                out.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
            self._close(out)

    def _thinking(self, block: dict[str, Any], out: list[Event]) -> None:
        if self._open != "thinking" or self._signed:
            self._start({"type": "thinking", "thinking": "", "signature": ""}, "thinking", out)
        if block["thinking"]:
            self._generated.append(block["thinking"])
            out.append(self._delta({"type": "thinking_delta", "thinking": block["thinking"]}))
        if block["signature"] and not self._signed:
            out.append(self._delta({"type": "signature_delta", "signature": block["signature"]}))
            self._signed = True

    def _start(self, content_block: dict[str, Any], kind: str, out: list[Event]) -> None:
        self._close(out)
        out.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": self._index, "content_block": content_block},
            )
        )
        self._open = kind
        self._signed = False

    def _delta(self, delta: dict[str, Any]) -> Event:
        return "content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta}

    def _close(self, out: list[Event]) -> None:
        if self._open is None:
            return
        out.append(("content_block_stop", {"type": "content_block_stop", "index": self._index}))
        self._index += 1
        self._open = None

    def _message_start(self, chunk: dict[str, Any]) -> Event:
        self.started = True
        meta = chunk.get("usageMetadata")
        usage = anthropic_usage(meta)
        if meta is None:
            usage["input_tokens"] = self.input_estimate
        usage["output_tokens"] = 1
        message: dict[str, Any] = {
            "id": "msg_" + str(chunk.get("responseId") or "gemini"),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return "message_start", {"type": "message_start", "message": message}

    def _fail(self, chunk: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        if not self.started:
            out.append(self._message_start({}))
        self.finished = True
        _, kind, message = google_error_fields(500, chunk)
        error = {"type": kind, "message": f"{self.backend}: {message}"}
        out.append(("error", {"type": "error", "error": error}))
        return out
