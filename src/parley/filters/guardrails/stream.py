"""Editing the text of a streamed reply event by event, holding back only what must wait.

A `Gate` decides, for the text pending on one channel (an Anthropic content block, an OpenAI
choice's content or one of its tool calls), how many trailing characters to hold (`hold`) and
what the released part becomes (`release`, which may raise to end the stream). Held text goes
out with the next delta of its channel, or just before the channel ends (`content_block_stop`,
a `finish_reason`, `[DONE]`, the end of the stream). Events the gate does not change keep their
bytes; a delta whose text is all held is not sent.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

from parley.pipeline.filter import StreamEvent

Channel = tuple[Any, ...]


class Gate(Protocol):
    def hold(self, pending: str) -> int: ...

    def release(self, text: str, json_string: bool, channel: Channel) -> str: ...


_DELTA_FIELDS = {"text_delta": ("text", False), "input_json_delta": ("partial_json", True)}


class StreamEditor:
    __slots__ = ("api", "gate", "kinds", "pending", "template")

    def __init__(self, api: str, gate: Gate) -> None:
        self.api = api
        self.gate = gate
        self.pending: dict[Channel, str] = {}
        self.kinds: dict[Channel, str] = {}  # Anthropic: the delta type of each channel
        self.template: dict[str, Any] | None = None  # OpenAI: a chunk to model flushed text on

    def on_event(self, event: StreamEvent) -> list[StreamEvent]:
        data = event.data
        if self.api == "openai":
            if isinstance(data, dict) and isinstance(data.get("choices"), list):
                return self._chunk(event, data)
            if data is None and event.raw.strip() == "[DONE]":
                return [*self.finish(), event]
            return [event]
        if not isinstance(data, dict):
            return [event]
        kind = data.get("type")
        if kind == "content_block_delta":
            return self._delta(event, data)
        if kind == "content_block_start":
            return [self._block_start(event, data)]
        if kind == "content_block_stop":
            return [*self._flush_channel(("block", data.get("index"))), event]
        if kind in ("message_delta", "message_stop", "error"):
            return [*self.finish(), event]
        return [event]

    def finish(self) -> list[StreamEvent]:
        """Everything still held, as events, in channel order."""
        out: list[StreamEvent] = []
        for channel in list(self.pending):
            out.extend(self._flush_channel(channel))
        return out

    # Anthropic

    def _delta(self, event: StreamEvent, data: dict[str, Any]) -> list[StreamEvent]:
        delta = data.get("delta") or {}
        dtype = delta.get("type")
        channel = ("block", data.get("index"))
        if dtype == "citations_delta":
            citation = delta.get("citation")
            if isinstance(citation, dict) and isinstance(citation.get("cited_text"), str):
                text = self.gate.release(citation["cited_text"], False, channel)
                if text != citation["cited_text"]:
                    return [
                        event.edited(dict(data, delta=dict(delta, citation=dict(citation, cited_text=text))))
                    ]
            return [event]
        spec = _DELTA_FIELDS.get(dtype or "")
        if spec is None or not isinstance(delta.get(spec[0]), str):
            return [event]
        field, json_string = spec
        self.kinds[channel] = dtype or ""
        out = self._push(channel, delta[field], json_string)
        if out == delta[field]:
            return [event]
        if not out:
            return []
        return [event.edited(dict(data, delta=dict(delta, **{field: out})))]

    def _block_start(self, event: StreamEvent, data: dict[str, Any]) -> StreamEvent:
        """A text block that starts with text (rare: the real API starts them empty)."""
        block = data.get("content_block")
        if not isinstance(block, dict) or block.get("type") != "text" or not block.get("text"):
            return event
        text = block["text"]
        new = self.gate.release(text, False, ("block", data.get("index")))
        return event if new == text else event.edited(dict(data, content_block=dict(block, text=new)))

    def _flush_channel(self, channel: Channel) -> list[StreamEvent]:
        rest = self.pending.pop(channel, "")
        if not rest:
            return []
        if channel[0] == "block":
            dtype = self.kinds.get(channel, "text_delta")
            field, json_string = _DELTA_FIELDS[dtype]
            text = self.gate.release(rest, json_string, channel)
            payload = {
                "type": "content_block_delta",
                "index": channel[1],
                "delta": {"type": dtype, field: text},
            }
            return [StreamEvent("content_block_delta", payload, "")]
        return [self._openai_flush(channel, rest)]

    def _push(self, channel: Channel, text: str, json_string: bool) -> str:
        pending = self.pending.get(channel, "") + text
        held = self.gate.hold(pending)
        cut = len(pending) - held
        self.pending[channel] = pending[cut:]
        return self.gate.release(pending[:cut], json_string, channel) if cut else ""

    # OpenAI

    def _chunk(self, event: StreamEvent, data: dict[str, Any]) -> list[StreamEvent]:
        if self.template is None:
            self.template = data
        edited = None
        before: list[StreamEvent] = []
        for i, choice in enumerate(data["choices"]):
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", i)
            delta = choice.get("delta")
            if isinstance(delta, dict):
                new_delta = self._openai_delta(index, delta)
                if new_delta is not delta:
                    edited = edited or copy.deepcopy(data)
                    edited["choices"][i]["delta"] = new_delta
            if choice.get("finish_reason"):
                for channel in [c for c in self.pending if c[1] == index]:
                    before.extend(self._flush_channel(channel))
        return [*before, event.edited(edited) if edited is not None else event]

    def _openai_delta(self, index: int, delta: dict[str, Any]) -> dict[str, Any]:
        out = delta
        content = delta.get("content")
        if isinstance(content, str) and content:
            text = self._push(("content", index), content, False)
            if text != content:
                out = dict(delta, content=text)
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            new_calls = []
            for call in calls:
                fn = call.get("function") if isinstance(call, dict) else None
                args = fn.get("arguments") if isinstance(fn, dict) else None
                if isinstance(fn, dict) and isinstance(args, str) and args:
                    text = self._push(("tool", index, call.get("index", 0)), args, True)
                    if text != args:
                        call = dict(call, function=dict(fn, arguments=text))
                new_calls.append(call)
            if new_calls != calls:
                out = dict(out, tool_calls=new_calls)
        return out

    def _openai_flush(self, channel: Channel, rest: str) -> StreamEvent:
        base = self.template or {}
        chunk: dict[str, Any] = {k: base[k] for k in ("id", "object", "created", "model") if k in base}
        if channel[0] == "content":
            delta: dict[str, Any] = {"content": self.gate.release(rest, False, channel)}
        else:
            text = self.gate.release(rest, True, channel)
            delta = {"tool_calls": [{"index": channel[2], "function": {"arguments": text}}]}
        chunk["choices"] = [{"index": channel[1], "delta": delta, "finish_reason": None}]
        return StreamEvent(None, chunk, "")
