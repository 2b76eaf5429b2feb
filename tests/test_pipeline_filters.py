"""The filter chain: order by phase, on_done exactly once, and streamed events edited, held back
and released as they arrive, checked with the anthropic SDK's own stream accumulator."""

from __future__ import annotations

import asyncio

import anthropic
import httpx2 as httpx
import pytest

from parley.config import build_config
from parley.core.context import RequestContext
from parley.core.errors import GatewayError
from parley.core.stream import UpstreamReply
from parley.gateway import build_gateway
from parley.pipeline.chain import FilterChain
from parley.pipeline.filter import Filter, Phase, StreamEvent
from parley.server.app import create_app


class QueueSource:
    """An upstream stream the test feeds chunk by chunk."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = False

    at_boundary = True
    at_eof = False

    async def next_chunk(self) -> bytes | None:
        return await self.queue.get()

    def close(self) -> None:
        self.closed = True


def frame(name: str, text: str) -> bytes:
    return (
        f'event: {name}\ndata: {{"type":"{name}","index":0,'
        f'"delta":{{"type":"text_delta","text":"{text}"}}}}\n\n'
    ).encode()


class Restore(Filter):
    """Replaces the placeholder <P1> with 'Alice', even when it arrives split across events."""

    phase = Phase.GUARDRAILS

    def __init__(self) -> None:
        self.held: StreamEvent | None = None
        self.done = 0

    def wants_events(self, ctx: RequestContext) -> bool:
        return True

    def on_event(self, ctx: RequestContext, event: StreamEvent) -> list[StreamEvent]:
        if event.name != "content_block_delta":
            return [event]
        text = event.data["delta"]["text"]
        if self.held is not None:
            text = self.held.data["delta"]["text"] + text
            self.held = None
        if text.endswith(("<", "<P", "<P1")):  # maybe the start of a placeholder: hold it
            self.held = event.edited({**event.data, "delta": {"type": "text_delta", "text": text}})
            return []
        if "<P1>" not in text and text == event.data["delta"]["text"]:
            return [event]  # untouched: the exact bytes go on
        return [
            event.edited(
                {**event.data, "delta": {"type": "text_delta", "text": text.replace("<P1>", "Alice")}}
            )
        ]

    def on_stream_end(self, ctx: RequestContext) -> list[StreamEvent]:
        held, self.held = self.held, None
        return [held] if held is not None else []

    def on_done(self, ctx: RequestContext) -> None:
        self.done += 1


class Order(Filter):
    def __init__(self, phase: Phase, seen: list[str], refuse: bool = False) -> None:
        self.phase = phase  # type: ignore[misc]
        self.seen = seen
        self.refuse = refuse

    async def on_request(self, ctx, body):
        self.seen.append(f"request:{self.phase.name}")
        if self.refuse:
            raise GatewayError(429, "refused", "rate_limit_error")
        return None

    def on_done(self, ctx: RequestContext) -> None:
        self.seen.append(f"done:{self.phase.name}")


async def test_phases_order_and_every_on_done_runs_once_after_a_refusal():
    seen: list[str] = []
    chain = FilterChain(
        [Order(Phase.BUDGET, seen), Order(Phase.LIMITS, seen, refuse=True), Order(Phase.AUTH, seen)]
    )
    ctx = RequestContext(api="anthropic", route="/v1/messages", headers={})
    with pytest.raises(GatewayError):
        await chain.request(ctx, {})
    chain.done(ctx)
    chain.done(ctx)
    assert seen == ["request:AUTH", "request:LIMITS", "done:AUTH", "done:LIMITS", "done:BUDGET"]


class Noting(Filter):
    """Takes note with the synchronous hook only."""

    def __init__(self, phase: Phase, seen: list[str]) -> None:
        self.phase = phase  # type: ignore[misc]
        self.seen = seen

    def observe_request(self, ctx, body):
        self.seen.append(f"noted:{self.phase.name}")


class Answering(Filter):
    phase = Phase.CACHE

    async def on_request(self, ctx, body):
        return UpstreamReply(200, {}, body=b"{}")  # a cache hit: the walk ends here


async def test_observe_request_runs_in_phase_order_and_not_after_an_answer():
    seen: list[str] = []
    ctx = RequestContext(api="anthropic", route="/v1/messages", headers={})
    chain = FilterChain([Noting(Phase.METRICS, seen), Order(Phase.AUTH, seen), Noting(Phase.LIMITS, seen)])
    assert await chain.request(ctx, {}) is None
    assert seen == ["request:AUTH", "noted:LIMITS", "noted:METRICS"]
    seen.clear()
    answered = FilterChain([Noting(Phase.METRICS, seen), Answering(), Noting(Phase.AUTH, seen)])
    reply = await answered.request(ctx, {})
    assert reply is not None and reply.status == 200
    assert seen == ["noted:AUTH"]  # the observer after the cache, like an on_request, is skipped


def test_a_filter_may_not_override_both_request_hooks():
    class Both(Filter):
        async def on_request(self, ctx, body):
            return None

        def observe_request(self, ctx, body):
            return None

    with pytest.raises(TypeError, match="both"):
        FilterChain([Both()])


async def test_held_back_placeholder_is_restored_and_released_before_the_upstream_ends():
    restore = Restore()
    chain = FilterChain([restore])
    ctx = RequestContext(api="anthropic", route="/v1/messages", headers={})
    upstream = QueueSource()
    reply = await chain.reply(ctx, UpstreamReply(200, {}, source=upstream))
    source = reply.source
    assert source is not None and source is not upstream

    await upstream.queue.put(frame("content_block_delta", "Hi <P"))
    assert await source.next_chunk() == b""  # held: the placeholder may go on
    await upstream.queue.put(frame("content_block_delta", "1>, bye"))
    out = await asyncio.wait_for(source.next_chunk(), 1)  # the upstream has not ended
    assert b'"text":"Hi Alice, bye"' in out
    plain = frame("content_block_delta", "as is")
    await upstream.queue.put(plain)
    assert await source.next_chunk() == plain  # untouched events keep their bytes
    await upstream.queue.put(frame("content_block_delta", "tail <"))
    assert await source.next_chunk() == b""
    await upstream.queue.put(None)
    assert b'"text":"tail <"' in await source.next_chunk()  # what was held comes out at the end
    assert await source.next_chunk() is None
    source.close()
    assert upstream.closed


def _client(app) -> anthropic.AsyncAnthropic:
    transport = httpx.ASGITransport(app=app)
    return anthropic.AsyncAnthropic(
        base_url="http://parley.test", api_key="k", http_client=httpx.AsyncClient(transport=transport)
    )


async def test_a_stream_through_the_event_filters_still_satisfies_the_sdk():
    """The mock model's stream parsed, re-encoded where edited, and accumulated by the SDK."""
    config = build_config({"model_list": [{"model_name": "m", "params": {"model": "mock/m"}}]}, "test")
    restore = Restore()
    gw = build_gateway(config, extra_filters=[restore])
    app = create_app(config, gw)
    assert "guardrails:Restore" in gw.pipeline.chain.names()
    await gw.start()
    try:
        async with _client(app).messages.stream(
            model="m", max_tokens=64, messages=[{"role": "user", "content": "say <P1> please"}]
        ) as s:
            message = await s.get_final_message()
    finally:
        await gw.stop()
    assert "Alice" in message.content[0].text and "<P1>" not in message.content[0].text
    assert restore.done == 1
