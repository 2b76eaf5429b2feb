"""The ordered filter chain, and the stream wrapper that shows filters each parsed event.

Filters are sorted once by phase (stable, so filters of one phase keep the order they were added
in). Each hook runs only the filters that override it, so an unused hook costs nothing per request;
a filter's synchronous `observe_request` runs in the request walk in its place, without a coroutine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from parley.core.context import RequestContext
from parley.core.hooks import overrides
from parley.core.sse import Event, SSEDecoder
from parley.core.stream import ChunkSource, UpstreamReply, WrappedSource
from parley.pipeline.filter import Filter, StreamEvent

log = logging.getLogger("parley")


class FilterChain:
    def __init__(self, filters: Iterable[Filter]) -> None:
        self.filters = sorted(filters, key=lambda f: f.phase)
        # the request walk: (hook, is a coroutine function), bound once
        self._request: list[tuple[Callable[[RequestContext, dict[str, Any] | None], Any], bool]] = []
        for f in self.filters:
            if overrides(f, Filter, "observe_request"):
                if overrides(f, Filter, "on_request"):
                    raise TypeError(f"{type(f).__name__} overrides both on_request and observe_request")
                self._request.append((f.observe_request, False))
            elif overrides(f, Filter, "on_request"):
                self._request.append((f.on_request, True))
        self._response = [f for f in self.filters if overrides(f, Filter, "on_response")]
        self._events = [f for f in self.filters if overrides(f, Filter, "wants_events")]
        self._done = [f for f in self.filters if overrides(f, Filter, "on_done")]

    def names(self) -> list[str]:
        return [f"{f.phase.name.lower()}:{type(f).__name__}" for f in self.filters]

    async def request(self, ctx: RequestContext, body: dict[str, Any] | None) -> UpstreamReply | None:
        """Run `on_request` in order; a filter that answers (a cache hit) ends the walk."""
        for hook, waits in self._request:
            if waits:
                reply: UpstreamReply | None = await hook(ctx, body)
                if reply is not None:
                    return reply
            else:
                hook(ctx, body)
        return None

    async def reply(self, ctx: RequestContext, reply: UpstreamReply) -> UpstreamReply:
        """Show the reply to the filters: whole bodies to `on_response`, streams event by event."""
        if reply.source is None:
            for f in self._response:
                await f.on_response(ctx, reply)
            return reply
        watching = [f for f in self._events if f.wants_events(ctx)]
        if watching:
            reply.source = EventStream(reply.source, watching, ctx)
        return reply

    def done(self, ctx: RequestContext) -> None:
        """Run every `on_done` exactly once per request; never raises."""
        if ctx.finished:
            return
        ctx.finished = True
        if ctx.ended_at is None:
            ctx.ended_at = time.perf_counter()
        for f in self._done:
            try:
                f.on_done(ctx)
            except Exception:
                log.exception("on_done of %s failed (request %s)", type(f).__name__, ctx.request_id)


class EventStream(WrappedSource):
    """Decodes the client-protocol SSE stream and passes each event through the watching filters.

    Output is whole frames, emitted as soon as the upstream chunk that completed them arrives: a
    filter holding an event back decides itself when to let it go. Untouched events keep their
    exact bytes.
    """

    __slots__ = ("_ended", "_eof", "ctx", "decoder", "filters")

    def __init__(self, inner: ChunkSource, filters: list[Filter], ctx: RequestContext) -> None:
        super().__init__(inner)
        self.filters = filters
        self.ctx = ctx
        self.decoder = SSEDecoder()
        self._eof = False
        self._ended = False

    at_boundary = True  # every chunk returned holds whole frames

    @property
    def at_eof(self) -> bool:
        return self._eof

    async def next_chunk(self) -> bytes | None:
        if self._ended:
            return None
        chunk = await self.inner.next_chunk()
        if chunk is None:
            return self._finish([]) or None
        events = self._run(_parsed(self.decoder.feed(chunk)))
        if self.inner.at_eof:  # the last chunk: release what is held in the same write
            return self._finish(events)
        return b"".join(e.encode() for e in events)

    def _finish(self, events: list[StreamEvent]) -> bytes:
        self._ended = self._eof = True
        events.extend(self._run(_parsed(self.decoder.flush())))
        for i, f in enumerate(self.filters):  # what a filter still holds goes through the rest
            events.extend(self._run(f.on_stream_end(self.ctx), start=i + 1))
        return b"".join(e.encode() for e in events)

    def _run(self, events: list[StreamEvent], start: int = 0) -> list[StreamEvent]:
        for f in self.filters[start:]:
            passed: list[StreamEvent] = []
            for event in events:
                passed.extend(f.on_event(self.ctx, event))
            events = passed
        return events


def _parsed(raw_events: list[Event]) -> list[StreamEvent]:
    out = []
    for e in raw_events:
        try:
            data = orjson.loads(e.data) if e.data[:1] in ("{", "[") else None
        except orjson.JSONDecodeError:
            data = None
        out.append(StreamEvent(e.event, data, e.data, _frame(e.event, e.data)))
    return out


def _frame(name: str | None, data: str) -> bytes:
    head = f"event: {name}\n" if name is not None else ""
    return (head + "".join(f"data: {line}\n" for line in data.split("\n")) + "\n").encode()
