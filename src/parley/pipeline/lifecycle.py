"""One lifecycle for every client-facing route.

authenticate → read and parse → route → filters on the request → upstream call → filters on the
reply (or on each streamed event) → relay → `on_done` exactly once, however the request ends.
Errors come back in the envelope of the API that was called. An `Endpoint` supplies what differs
between routes (how to parse, route and send, which envelope); the `Pipeline` runs the rest.
The HTTP server and the SDK both drive it; neither repeats it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from parley.core.context import RequestContext
from parley.core.errors import GatewayError
from parley.core.sse import PING_FRAME, encode_event
from parley.core.stream import UpstreamReply
from parley.pipeline.chain import FilterChain
from parley.pipeline.filter import Authenticator
from parley.providers.base import Provider
from parley.router.run import Router

log = logging.getLogger("parley")

ReadBody = Callable[[int], Awaitable[bytes]]


class Endpoint:
    """What one route does differently; subclasses override `parse`, `route` and `send`."""

    api = "anthropic"  # whose envelope errors use
    route = ""
    ping_frame = PING_FRAME
    max_body: int | None = None  # None: the config's max_request_size_mb

    def authenticate(self, ctx: RequestContext, auth: Authenticator) -> Awaitable[None]:
        return auth.authenticate(ctx)  # the authenticator's coroutine itself: one frame less

    def parse(self, ctx: RequestContext, raw: bytes) -> dict[str, Any] | None:
        raise NotImplementedError

    def check(self, ctx: RequestContext, body: dict[str, Any]) -> None:
        """The checks the gateway makes on a parsed body; notes the model and whether it streams."""

    def prepare(self, ctx: RequestContext, body: dict[str, Any] | None) -> None:
        """Route (404 before any filter runs) and read who the request is for."""

    async def send(self, ctx: RequestContext, body: dict[str, Any] | None, raw: bytes) -> UpstreamReply:
        raise NotImplementedError

    def reply_headers(self, ctx: RequestContext, reply: UpstreamReply) -> dict[str, str]:
        return dict(reply.headers)

    def cut_frame(self, ctx: RequestContext, type_: str, message: str) -> bytes:
        """The error that ends a stream cut anywhere (even inside an event, which the blank line
        before it closes)."""
        return b"\n\n" + self.error_frame(ctx, type_, message)

    def client_form(self, ctx: RequestContext, outcome: Outcome) -> Outcome:
        """The outcome in the wire format of the API called (replies and refusals alike); the
        default leaves Anthropic and OpenAI replies as they are."""
        return outcome

    def error_body(self, ctx: RequestContext, error: GatewayError) -> bytes:
        return error.anthropic_body(ctx.request_id)

    def error_frame(self, ctx: RequestContext, type_: str, message: str) -> bytes:
        """The event that reports a failure after a stream has started."""
        return encode_event(
            "error",
            {"type": "error", "error": {"type": type_, "message": message}, "request_id": ctx.request_id},
        )


@dataclass(slots=True)
class Outcome:
    """What to relay: the reply and the headers the client gets."""

    reply: UpstreamReply
    headers: dict[str, str]


class Pipeline:
    def __init__(
        self,
        auth: Authenticator,
        chain: FilterChain,
        router: Router,
        providers: dict[str, Provider],
        max_request_bytes: int,
        ping_interval: float,
        max_stream_seconds: float,
    ) -> None:
        self.auth = auth
        self.chain = chain
        self.router = router
        self.providers = providers
        self.max_request_bytes = max_request_bytes
        self.ping_interval = ping_interval
        self.max_stream_seconds = max_stream_seconds  # a stream longer than this ends with an error

    async def run(self, endpoint: Endpoint, ctx: RequestContext, read: ReadBody) -> Outcome:
        """Everything up to the relay; never raises. Call `finish(ctx)` once the reply is over."""
        try:
            await endpoint.authenticate(ctx, self.auth)
            raw = await read(endpoint.max_body or self.max_request_bytes)
            body = endpoint.parse(ctx, raw)
            reply = await self.process(endpoint, ctx, body, raw)
            return endpoint.client_form(ctx, Outcome(reply, endpoint.reply_headers(ctx, reply)))
        except GatewayError as error:
            return self.refusal(endpoint, ctx, error)
        except Exception:  # a bug: still the API's envelope, and the request still logged
            log.exception("unexpected error on %s (request %s)", ctx.route, ctx.request_id)
            return self.refusal(
                endpoint,
                ctx,
                GatewayError(
                    500,
                    f"internal gateway error; see the gateway log for request {ctx.request_id}",
                    "api_error",
                ),
            )

    async def process(
        self, endpoint: Endpoint, ctx: RequestContext, body: dict[str, Any] | None, raw: bytes
    ) -> UpstreamReply:
        """Route, run the request filters, call upstream, show the reply to the filters."""
        endpoint.prepare(ctx, body)
        reply = await self.chain.request(ctx, body)
        if reply is None:
            reply = await endpoint.send(ctx, body, raw)
        return await self.chain.reply(ctx, reply)

    def refusal(self, endpoint: Endpoint, ctx: RequestContext, error: GatewayError) -> Outcome:
        ctx.status = error.status
        ctx.error_type = error.type
        ctx.error_message = error.message
        headers = {"content-type": "application/json", "request-id": ctx.request_id, **error.headers}
        reply = UpstreamReply(error.status, headers, body=endpoint.error_body(ctx, error))
        return endpoint.client_form(ctx, Outcome(reply, headers))

    def finish(self, ctx: RequestContext) -> None:
        """The request is over: every filter's `on_done`, once."""
        self.chain.done(ctx)
