"""`POST /v1/chat/completions` (and `/chat/completions`): the OpenAI Chat Completions API.

Routed by `model` like `/v1/messages`; errors use OpenAI's envelope, streams OpenAI's framing
(`: ping` comments as keep-alive, `data: {"error": ...}` for failures after the 200).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from parley.pipeline.chat import send_chat
from parley.core.context import RequestContext
from parley.core.errors import GatewayError, invalid_request
from parley.gateway import Gateway
from parley.server.body import check_model_and_messages, parse_object, read_body
from parley.server.messages import reply_headers
from parley.server.relay import RelayResponse
from parley.server.responses import openai_error
from parley.core.sse import encode_data
from parley.translate.chat_errors import openai_stream_error

OPENAI_PING_FRAME = b": ping\n\n"
log = logging.getLogger("parley")


def openai_stream_error_frame(ctx: RequestContext, type_: str, message: str) -> bytes:
    return encode_data(openai_stream_error(type_, message))


def check_chat_request(body: dict[str, Any]) -> None:
    """The checks the gateway makes itself; the backend (or the translator) validates the rest."""
    check_model_and_messages(body, non_empty=True)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid_request("stream: Input should be a valid boolean", param="stream")


class ChatRoutes:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def create(self, request: Request) -> Response:
        gw = self.gw
        ctx = RequestContext(api="openai", route="/v1/chat/completions", headers=request.headers)
        try:
            await gw.auth.authenticate(ctx)
            raw = await read_body(request, gw.config.max_request_bytes)
            body = parse_object(raw)
            check_chat_request(body)
            ctx.model = body["model"]
            ctx.stream = body.get("stream") is True
            if isinstance(body.get("user"), str) and body["user"]:
                ctx.end_user = ctx.end_user or body["user"]
            reply = await send_chat(gw, ctx, body, raw, request.headers)
        except GatewayError as error:
            response = openai_error(ctx, error)
            gw.finish(ctx)
            return response
        except Exception:  # a bug: still answer in the envelope of the API called
            log.exception("unexpected error on /v1/chat/completions (request %s)", ctx.request_id)
            response = openai_error(ctx, GatewayError(500, "internal gateway error; see the gateway log "
                                                           f"for request {ctx.request_id}", "api_error"))
            gw.finish(ctx)
            return response
        headers = reply_headers(ctx, reply.headers)
        headers["x-request-id"] = ctx.request_id
        return RelayResponse(gw, ctx, reply, headers, ping_frame=OPENAI_PING_FRAME,
                             error_frame=openai_stream_error_frame)
