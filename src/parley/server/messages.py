"""`POST /v1/messages` and `POST /v1/messages/count_tokens` (the Anthropic Messages API)."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from parley.core.context import RequestContext
from parley.pipeline.messages import send_messages
from parley.core.errors import GatewayError
from parley.gateway import Gateway
from parley.server.body import check_messages_request, parse_object, read_body
from parley.server.relay import RelayResponse
from parley.server.responses import anthropic_error

log = logging.getLogger("parley")

# Upstream reply headers a client may see; the rest (cookies, CDN, rate limits of our own key) stay.
_REPLY_HEADERS = ("content-type", "cache-control", "retry-after", "retry-after-ms", "x-should-retry")


def reply_headers(ctx: RequestContext, upstream: dict[str, str]) -> dict[str, str]:
    headers = {k: upstream[k] for k in _REPLY_HEADERS if k in upstream}
    headers.setdefault("content-type", "application/json")
    if "request-id" in upstream:
        headers["upstream-request-id"] = upstream["request-id"]
    if ctx.deployment is not None:
        headers["x-parley-deployment"] = ctx.deployment.id
    if ctx.dropped:
        headers["x-parley-dropped"] = ",".join(ctx.dropped)
    headers.update(ctx.response_headers)
    headers["request-id"] = ctx.request_id
    return headers


class MessagesRoutes:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def create(self, request: Request) -> Response:
        return await self._handle(request, "/v1/messages", needs_max_tokens=True)

    async def count_tokens(self, request: Request) -> Response:
        return await self._handle(request, "/v1/messages/count_tokens", needs_max_tokens=False)

    async def _handle(self, request: Request, path: str, *, needs_max_tokens: bool) -> Response:
        gw = self.gw
        ctx = RequestContext(api="anthropic", route=path, headers=request.headers)
        try:
            await gw.auth.authenticate(ctx)
            raw = await read_body(request, gw.config.max_request_bytes)
            body = parse_object(raw)
            check_messages_request(body, needs_max_tokens=needs_max_tokens)
            ctx.model = body["model"]
            ctx.stream = bool(body.get("stream")) and needs_max_tokens
            reply = await send_messages(gw, ctx, body, raw, request.headers,
                                        query=request.scope["query_string"].decode("latin-1"), path=path)
        except GatewayError as error:
            response = anthropic_error(ctx, error)
            gw.finish(ctx)
            return response
        except Exception:  # a bug: still the API's envelope, and the request still logged
            log.exception("unexpected error on %s (request %s)", path, ctx.request_id)
            response = anthropic_error(ctx, GatewayError(500, "internal gateway error; see the gateway "
                                                              f"log for request {ctx.request_id}", "api_error"))
            gw.finish(ctx)
            return response
        return RelayResponse(gw, ctx, reply, reply_headers(ctx, reply.headers))
