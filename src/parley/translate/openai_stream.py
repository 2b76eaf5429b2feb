"""OpenAI chat.completion.chunk stream -> Anthropic SSE events, as an incremental state machine.

Feed one parsed chunk at a time and get the (event name, payload) pairs it completes; call
`finish` when the upstream ends. Guarantees (reference §3.2, §8.4): `message_start` first and once,
with usage; block indices 0, 1, 2... with one block open at a time; `tool_use` blocks start with
`input: {}` and every argument fragment is forwarded at once as `input_json_delta` (never a
fragment that would break the client's JSON parser); `message_delta` with the stop reason and
cumulative usage, then `message_stop`, last. Parallel tool calls are keyed by their `index`: a call
that starts while another is still mid-arguments (servers that interleave) is buffered and streamed
as soon as the open one's JSON object closes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from parley.translate.json_prefix import JsonPrefix
from parley.translate.openai_errors import stream_error_payload
from parley.translate.openai_to_anthropic import (
    anthropic_id,
    anthropic_usage,
    estimated_usage,
    reported_model,
    stop_reason,
)

Event = tuple[str, dict[str, Any]]


@dataclass(slots=True)
class _Tool:
    id: str
    name: str
    block: int | None = None  # Anthropic block index once opened
    json: JsonPrefix = field(default_factory=JsonPrefix)
    buffered: list[str] = field(default_factory=list)
    closed: bool = False

    @property
    def settled(self) -> bool:
        """Its arguments are a whole object (or broken): later calls may start."""
        return self.json.complete or not self.json.valid


class OpenAIStreamTranslator:
    def __init__(
        self,
        *,
        model: str,
        stop_sequences: Iterable[str] = (),
        input_estimate: int = 0,
        max_tokens: int | None = None,
    ) -> None:
        self.model = model  # until the first chunk names the model that answers
        self.max_tokens = max_tokens
        self.stop_sequences = tuple(stop_sequences)
        self.input_estimate = input_estimate
        self.started = False
        self.finished = False
        self.usage: dict[str, int] | None = None  # Anthropic usage, once the server reported it
        self.estimated = False
        self.notes: list[str] = []
        self._next_index = 0
        self._open: str | None = None  # "text", "refusal", "thinking" or "tool"
        self._open_tool: _Tool | None = None
        self._tools: dict[int, _Tool] = {}
        self._pending: list[_Tool] = []
        self._finish_reason: str | None = None
        self._matched: Any = None
        self._refused = False
        self._generated: list[str] = []
        self._pieces = 0  # chunks that carried generated text (local servers: one token each)

    # ------------------------------------------------------------------ input

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        """Events for one parsed chunk (`data:` JSON) of the upstream stream."""
        if self.finished:
            return []
        if chunk.get("error") is not None and not chunk.get("choices"):
            return self._fail(chunk["error"])
        out: list[Event] = []
        usage = anthropic_usage(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
        if not self.started:
            self.model = reported_model(chunk, self.model)
            out.append(self._message_start(chunk.get("id")))
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice, out)
        return out

    def finish(self, *, done: bool = True) -> list[Event]:
        """Close the message. `done`: the upstream ended properly (`data: [DONE]`)."""
        if self.finished:
            return []
        if not done and self._finish_reason is None:
            return self._fail(
                {"type": "api_error", "message": "upstream stream ended before the reply was complete"}
            )
        out: list[Event] = [] if self.started else [self._message_start(None)]
        self._close_all(out)
        self.finished = True
        reason, sequence = stop_reason(
            self._finish_reason,
            has_tool_use=bool(self._tools),
            refused=self._refused,
            matched=self._matched,
            stop_sequences=self.stop_sequences,
        )
        out.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": reason, "stop_sequence": sequence, "stop_details": None},
                    "usage": self.final_usage(),
                },
            )
        )
        out.append(("message_stop", {"type": "message_stop"}))
        return out

    def final_usage(self) -> dict[str, int]:
        if self.usage is not None:
            return dict(self.usage)
        self.estimated = True
        return estimated_usage(
            self.input_estimate,
            "".join(self._generated),
            pieces=self._pieces,
            finish_reason=self._finish_reason,
            max_tokens=self.max_tokens,
        )

    # ------------------------------------------------------------------ one choice

    def _choice(self, choice: dict[str, Any], out: list[Event]) -> None:
        delta = v if isinstance(v := choice.get("delta"), dict) else {}
        if (
            delta.get("content")
            or delta.get("reasoning_content")
            or delta.get("reasoning")
            or delta.get("tool_calls")
        ):
            self._pieces += 1
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            self._text("thinking", reasoning, out)
        content = delta.get("content")
        if isinstance(content, str) and content:
            self._text("text", content, out)
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            self._refused = True
            self._text("refusal", refusal, out)
        for position, call in enumerate(delta.get("tool_calls") or ()):
            if isinstance(call, dict):
                self._tool_fragment(call, position, out)
        if choice.get("finish_reason"):
            self._finish_reason = choice["finish_reason"]
            self._matched = choice.get("stop_reason")
            self._close_all(out)

    def _text(self, kind: str, text: str, out: list[Event]) -> None:
        self._generated.append(text)
        if self._open != kind:
            self._close_open(out)
            self._flush_pending(out)
            block = (
                {"type": "thinking", "thinking": "", "signature": ""}
                if kind == "thinking"
                else {"type": "text", "text": ""}
            )
            self._start(kind, block, out)
        delta = (
            {"type": "thinking_delta", "thinking": text}
            if kind == "thinking"
            else {"type": "text_delta", "text": text}
        )
        out.append(self._delta(delta))

    def _tool_fragment(self, call: dict[str, Any], position: int, out: list[Event]) -> None:
        function = v if isinstance(v := call.get("function"), dict) else {}
        arguments = function.get("arguments")
        arguments = arguments if isinstance(arguments, str) else ""
        key = call.get("index")
        if not isinstance(key, int):  # servers that omit the index send whole calls
            key = len(self._tools) if call.get("id") or not self._tools else max(self._tools)
        tool = self._tools.get(key)
        if tool is None:
            tool = _Tool(anthropic_id("toolu_", call.get("id")), str(function.get("name") or ""))
            self._tools[key] = tool
            if self._open == "tool" and self._open_tool is not None and not self._open_tool.settled:
                self._pending.append(tool)
            else:
                self._close_open(out)
                self._open_tool_block(tool, out)
        elif tool.block is None and not tool.name and function.get("name"):
            tool.name = str(function["name"])
        if not arguments:
            return
        self._generated.append(arguments)
        if tool.block is None:
            tool.buffered.append(arguments)
        elif not tool.closed:
            self._stream_arguments(tool, arguments, out)
            if tool.settled and self._pending:
                self._close_open(out)
                self._promote_pending(out)
        elif arguments.strip():
            self._note_invalid(tool)

    # ------------------------------------------------------------------ blocks

    def _open_tool_block(self, tool: _Tool, out: list[Event]) -> None:
        self._start("tool", {"type": "tool_use", "id": tool.id, "name": tool.name, "input": {}}, out)
        tool.block = self._next_index - 1
        self._open_tool = tool
        for piece in tool.buffered:
            self._stream_arguments(tool, piece, out)
        tool.buffered.clear()

    def _stream_arguments(self, tool: _Tool, piece: str, out: list[Event]) -> None:
        valid = tool.json.feed(piece)
        if valid:
            out.append(self._delta({"type": "input_json_delta", "partial_json": piece[:valid]}))
        if valid < len(piece):
            self._note_invalid(tool)

    def _note_invalid(self, tool: _Tool) -> None:
        note = "invalid_tool_arguments:" + tool.id
        if note not in self.notes:
            self.notes.append(note)

    def _promote_pending(self, out: list[Event]) -> None:
        """Open buffered calls in order; stop at one still waiting for more arguments."""
        while self._pending:
            tool = self._pending.pop(0)
            self._open_tool_block(tool, out)
            if not tool.settled:
                return
            if self._pending:
                self._close_open(out)

    def _flush_pending(self, out: list[Event]) -> None:
        while self._pending:
            self._open_tool_block(self._pending.pop(0), out)
            self._close_open(out)

    def _close_all(self, out: list[Event]) -> None:
        self._close_open(out)
        self._flush_pending(out)

    def _start(self, kind: str, block: dict[str, Any], out: list[Event]) -> None:
        out.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": self._next_index, "content_block": block},
            )
        )
        self._next_index += 1
        self._open = kind

    def _delta(self, delta: dict[str, Any]) -> Event:
        return (
            "content_block_delta",
            {"type": "content_block_delta", "index": self._next_index - 1, "delta": delta},
        )

    def _close_open(self, out: list[Event]) -> None:
        if self._open is None:
            return
        if self._open == "thinking":
            out.append(self._delta({"type": "signature_delta", "signature": ""}))
        if self._open == "tool" and self._open_tool is not None:
            self._open_tool.closed = True
            self._open_tool = None
        out.append(("content_block_stop", {"type": "content_block_stop", "index": self._next_index - 1}))
        self._open = None

    # ------------------------------------------------------------------ message frame

    def _message_start(self, upstream_id: Any) -> Event:
        self.started = True
        usage = (
            dict(self.usage)
            if self.usage is not None
            else {
                "input_tokens": self.input_estimate,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            }
        )
        return (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": anthropic_id("msg_", upstream_id),
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "stop_details": None,
                    "usage": usage,
                },
            },
        )

    def _fail(self, error: Any) -> list[Event]:
        self.finished = True
        return [("error", stream_error_payload(error))]
