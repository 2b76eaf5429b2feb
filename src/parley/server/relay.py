"""The ASGI response that sends a pipeline's reply to the client.

Streams are relayed chunk by chunk as they arrive (no buffering), with a keep-alive ping after
`ping_interval` seconds of upstream silence (only between events), and a watcher that cancels the
relay, and so closes the upstream connection, the moment the client disconnects. A chunk already in
hand (`ready`: the router's first one, or bytes buffered) is relayed with neither: the watcher task
starts before the first wait for the upstream, so a stream that came whole costs no task. The filters'
`on_done` hooks run exactly once, whatever way the reply ends.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import Receive, Scope, Send

from parley.core.context import RequestContext
from parley.pipeline.lifecycle import Endpoint, Outcome, Pipeline
from parley.transport.http import UpstreamBroken

SHUTDOWN_MESSAGE = "the gateway shut down before the stream ended; retry the request"


def _raw_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


class RelayResponse:
    """Send the outcome (whole or streamed) and finish the request."""

    def __init__(self, pipeline: Pipeline, endpoint: Endpoint, ctx: RequestContext, outcome: Outcome) -> None:
        self.pipeline = pipeline
        self.endpoint = endpoint
        self.ctx = ctx
        self.reply = outcome.reply
        self.headers = outcome.headers
        self.started = False  # the response head went out (an error now can only cut the reply)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx, reply = self.ctx, self.reply
        ctx.status = reply.status
        try:
            if reply.source is None:
                body = reply.body or b""
                await send(
                    {
                        "type": "http.response.start",
                        "status": reply.status,
                        "headers": [*_raw_headers(self.headers), (b"content-length", b"%d" % len(body))],
                    }
                )
                self.started = True
                ctx.mark_first_byte()
                await send({"type": "http.response.body", "body": body})
            else:
                await self._stream(receive, send)
        finally:
            self.pipeline.finish(ctx)

    async def _stream(self, receive: Receive, send: Send) -> None:
        ctx, source = self.ctx, self.reply.source
        relay: asyncio.Task[None] | None = None  # this task, for the watcher to cancel
        done = False

        async def watch_disconnect() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    if not done:
                        ctx.status = 499
                        ctx.error_type = ctx.error_type or "client_disconnected"
                        assert relay is not None
                        relay.cancel()
                    return

        loop = asyncio.get_running_loop()
        watcher: asyncio.Task[None] | None = None  # started before the relay first waits upstream
        interval = self.pipeline.ping_interval
        deadline = loop.time() + self.pipeline.max_stream_seconds
        assert source is not None
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.reply.status,
                    "headers": _raw_headers(self.headers),
                }
            )
            self.started = True
            while True:
                if loop.time() >= deadline:
                    await send({"type": "http.response.body", "body": self._too_long(), "more_body": True})
                    break
                try:
                    if getattr(source, "ready", False):  # in hand (the router's first chunk): no wait
                        chunk = await source.next_chunk()
                    else:
                        if watcher is None:
                            relay = asyncio.current_task()
                            watcher = loop.create_task(watch_disconnect())
                        async with asyncio.timeout(min(interval, max(0.0, deadline - loop.time()))):
                            chunk = await source.next_chunk()
                except TimeoutError:
                    if loop.time() >= deadline:
                        continue
                    if source.at_boundary:  # never inside an event (raw bytes of unknown framing)
                        await send(
                            {
                                "type": "http.response.body",
                                "body": self.endpoint.ping_frame,
                                "more_body": True,
                            }
                        )
                    continue
                except UpstreamBroken as e:
                    ctx.error_type = ctx.error_type or "api_error"
                    ctx.error_message = f"upstream connection broke mid-stream: {e}"
                    await send(
                        {
                            "type": "http.response.body",
                            "body": self.endpoint.error_frame(ctx, "api_error", ctx.error_message),
                            "more_body": True,
                        }
                    )
                    break
                if chunk is None:
                    break
                if chunk:
                    ctx.mark_first_byte()
                    if source.at_eof:  # the last chunk: end in the same write
                        done = True
                        await send({"type": "http.response.body", "body": chunk, "more_body": False})
                        return
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            done = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if ctx.status == 499 and relay is not None:  # the client went away: swallow, close below
                relay.uncancel()
                return
            await self._cut(send)  # the server's shutdown time limit: tell the client, then go
            raise
        except OSError:  # the client's socket failed while we wrote
            ctx.status = 499
            ctx.error_type = ctx.error_type or "client_disconnected"
        finally:
            done = True
            if watcher is not None:
                watcher.cancel()
            source.close()

    def _too_long(self) -> bytes:
        """The error that ends a stream at the gateway's duration limit (`max_stream_seconds`)."""
        ctx = self.ctx
        ctx.error_type = "stream_too_long"
        ctx.error_message = (
            f"the stream reached the gateway's limit of {self.pipeline.max_stream_seconds:g} s"
        )
        return self.endpoint.error_frame(ctx, "api_error", ctx.error_message)

    async def _cut(self, send: Send) -> None:
        """End a stream that the server's shutdown cut, with an error event the client can read."""
        ctx = self.ctx
        ctx.error_type = "gateway_shutdown"
        ctx.error_message = SHUTDOWN_MESSAGE
        frame = self.endpoint.cut_frame(ctx, "overloaded_error", SHUTDOWN_MESSAGE)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            async with asyncio.timeout(1.0):
                await send({"type": "http.response.body", "body": frame, "more_body": False})
