"""OpenAI-compatible streams and replies: usage read on the side, or translated to the hub.

`OpenAIUsageSource` relays native OpenAI SSE bytes (Chat Completions clients on OpenAI backends);
`TranslatingSource` turns them into Anthropic frames for the hub. Both record usage and errors on
the request context.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import orjson

from parley.core.context import RequestContext
from parley.core.sse import EventTooLarge, SSEDecoder, WholeEvents, encode_event
from parley.core.stream import ChunkSource, UpstreamReply, WrappedSource
from parley.core.usage import Usage
from parley.transport.http import UpstreamBroken

log = logging.getLogger("parley.providers.openai")


def report_notes(ctx: RequestContext, notes: list[str]) -> None:
    for note in notes:
        if note.startswith("invalid_tool_arguments:"):
            log.warning(
                "request %s: upstream sent tool arguments that are not a JSON object (%s)",
                ctx.request_id,
                note.partition(":")[2],
            )
            ctx.invalid_tool_arguments.append(note.partition(":")[2])
        elif note == "usage_estimated":
            log.info("request %s: upstream reported no usage; tokens estimated", ctx.request_id)


def apply_openai_usage(usage: Usage, data: Any) -> None:
    """Record OpenAI usage in Anthropic terms: cached tokens are cache reads, not fresh input."""
    if not isinstance(data, dict):
        return
    given = data.get("prompt_tokens_details")
    details: dict[str, Any] = given if isinstance(given, dict) else {}
    cached = details.get("cached_tokens") or 0
    written = details.get("cache_write_tokens") or 0
    prompt = data.get("prompt_tokens") or 0
    usage.input_tokens = max(0, prompt - cached - written)
    usage.cache_read_input_tokens = cached
    usage.cache_creation_input_tokens = written
    usage.output_tokens = data.get("completion_tokens") or 0


def note_openai_json(ctx: RequestContext, reply: UpstreamReply) -> None:
    """Record usage or the error of an OpenAI JSON reply. A success that is not a chat completion
    (HTML, invalid JSON, an empty body, an error object sent with 200) becomes a 502 in OpenAI's
    envelope: it is not a success, and the client's SDK must not parse it as one."""
    data = _note_reply(ctx, reply, "choices", "a chat completion")
    if data is not None:
        apply_openai_usage(ctx.usage, data.get("usage"))


def note_openai_embeddings(ctx: RequestContext, reply: UpstreamReply) -> None:
    """Usage or error of an embeddings reply; a 2xx that is not a list of embeddings becomes a 502."""
    data = _note_reply(ctx, reply, "data", "a list of embeddings")
    if data is not None:
        usage = data.get("usage")
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        ctx.usage.input_tokens = tokens if isinstance(tokens, int) else 0


def _note_reply(ctx: RequestContext, reply: UpstreamReply, items: str, what: str) -> dict[str, Any] | None:
    """The reply's JSON when it is a success holding the list `items`; otherwise its error is
    recorded (a 2xx that is not `what` becomes a 502) and None is returned."""
    try:
        data = orjson.loads(reply.body) if reply.body else None
    except orjson.JSONDecodeError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if reply.status >= 400:
        ctx.error_type = str(error.get("type") or "api_error") if isinstance(error, dict) else "api_error"
        ctx.error_message = error.get("message") if isinstance(error, dict) else None
    elif isinstance(data, dict) and isinstance(data.get(items), list) and error is None:
        return data
    else:
        _not_a_completion(ctx, reply, error, what)
    return None


def _not_a_completion(ctx: RequestContext, reply: UpstreamReply, error: Any, what: str) -> None:
    if isinstance(error, dict):
        message = f"upstream sent an error with status {reply.status}: {error.get('message')}"
    else:
        snippet = (reply.body or b"")[:200].decode("utf-8", "replace")
        message = f"upstream returned a reply that is not {what}: {snippet!r}"
    ctx.error_type, ctx.error_message = "api_error", message
    reply.status = 502
    reply.body = orjson.dumps(
        {"error": {"message": message, "type": "api_error", "param": None, "code": None}}
    )
    reply.headers["content-type"] = "application/json"


class OpenAIUsageSource(WrappedSource):
    """Relays OpenAI SSE bytes untouched; decodes only frames that carry usage or an error.

    With `hide_usage_chunk` (parley asked for usage the client did not), frames are re-emitted one by
    one with their data unchanged, minus the usage-only chunk (`choices: []`)."""

    __slots__ = ("ctx", "decoder", "events", "hide_usage_chunk")

    def __init__(self, inner: ChunkSource, ctx: RequestContext, hide_usage_chunk: bool = False) -> None:
        super().__init__(inner)
        self.decoder = SSEDecoder()
        self.events = WholeEvents()
        self.ctx = ctx
        self.hide_usage_chunk = hide_usage_chunk

    at_boundary = True  # only whole events are passed on

    async def next_chunk(self) -> bytes | None:
        chunk = await self.inner.next_chunk()
        if chunk is None:
            return None
        kept: list[bytes] = []
        for event in self.decoder.feed(chunk):
            data = event.data
            has_usage = '"usage":{' in data or '"usage": {' in data
            if data.startswith('{"error"') or has_usage:
                self._note(data)
            if self.hide_usage_chunk and not (has_usage and '"choices":[]' in data.replace(" ", "")):
                kept.append(b"data: " + data.encode() + b"\n\n")
        if self.hide_usage_chunk:
            return b"".join(kept)
        try:
            return self.events.feed(chunk)
        except EventTooLarge as e:
            raise UpstreamBroken(str(e)) from None

    def _note(self, data: str) -> None:
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(payload, dict):
            return
        if isinstance(payload.get("error"), dict):
            self.ctx.error_type = self.ctx.error_type or str(payload["error"].get("type") or "api_error")
            self.ctx.error_message = payload["error"].get("message")
        apply_openai_usage(self.ctx.usage, payload.get("usage"))


class StreamMachine(Protocol):
    """A backend's stream chunks in, Anthropic events out (OpenAI's and Gemini's translators)."""

    finished: bool
    estimated: bool
    notes: list[str]

    def feed(self, chunk: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]: ...

    def finish(self, *, done: bool = True) -> list[tuple[str, dict[str, Any]]]: ...


class TranslatingSource(WrappedSource):
    """A backend's SSE bytes in (JSON `data:` lines), Anthropic SSE frames out; `next_chunk` only
    awaits the upstream read."""

    __slots__ = ("_ended", "ctx", "decoder", "machine")

    def __init__(self, inner: ChunkSource, machine: StreamMachine, ctx: RequestContext) -> None:
        super().__init__(inner)
        self.machine = machine
        self.ctx = ctx
        self.decoder = SSEDecoder()
        self._ended = False

    at_boundary = True  # every chunk returned is whole frames

    @property
    def at_eof(self) -> bool:
        return self._ended

    async def next_chunk(self) -> bytes | None:
        if self._ended:
            return None
        chunk = await self.inner.next_chunk()
        events = self.decoder.flush() if chunk is None else self.decoder.feed(chunk)
        out: list[tuple[str, dict]] = []
        for event in events:
            out.extend(self._event(event.data))
        if chunk is None and not self.machine.finished:
            out.extend(self.machine.finish(done=False))
        if self.machine.finished:
            self._ended = True
            self._settle()
        if not out:
            return b"" if chunk is not None else None
        return b"".join(self._frame(name, payload) for name, payload in out)

    def _event(self, data: str) -> list[tuple[str, dict]]:
        if data == "[DONE]":
            return self.machine.finish(done=True)
        if not data:
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            chunk = None
        if not isinstance(chunk, dict):  # not a chunk: the stream cannot be trusted past here
            log.warning(
                "request %s: upstream stream line is not a JSON object: %.200s", self.ctx.request_id, data
            )
            return self.machine.feed(
                {"error": {"type": "api_error", "message": "upstream sent a stream line that is not JSON"}}
            )
        return self.machine.feed(chunk)

    def _frame(self, name: str, payload: dict) -> bytes:
        ctx = self.ctx
        if name == "message_start":
            ctx.usage.update(payload["message"]["usage"])
        elif name == "message_delta":
            ctx.usage.update(payload["usage"])
            ctx.stop_reason = payload["delta"].get("stop_reason") or ctx.stop_reason
        elif name == "error":
            payload = dict(payload, request_id=ctx.request_id)
            ctx.error_type = payload["error"]["type"]
            ctx.error_message = payload["error"]["message"]
        return encode_event(name, payload)

    def _settle(self) -> None:
        self.ctx.usage.estimated = self.machine.estimated
        report_notes(self.ctx, self.machine.notes)
