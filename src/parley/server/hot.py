"""A plain ASGI dispatcher for the routes nearly every request takes, in front of Starlette.

`POST /v1/messages`, `/v1/chat/completions` and `/chat/completions` go straight to their handlers:
no error and exception middleware wrappers, no route matching over ~60 routes, no per-request
`request_response` closures, no Starlette `Request` (the handler reads the ASGI scope itself).
Everything else (and any request with a `root_path`) goes to the Starlette app unchanged. A bug
that escapes a handler before the reply started is answered like Starlette's handler does: logged,
and a 500 in the API's envelope.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from parley.admin.common import JSONBytes
from parley.core.context import new_request_id
from parley.core.errors import anthropic_error_body, openai_error_body
from parley.server.api import ApiRoutes

log = logging.getLogger("parley")

Handler = Callable[[Scope, Receive], Awaitable[Callable[[Scope, Receive, Send], Awaitable[None]]]]


class HotRoutes:
    """`rest` serves every other request (default: the Starlette app itself; `parley serve` puts
    uvicorn's proxy-headers middleware there, so only the routes that read the client's address or
    scheme pay for it)."""

    def __init__(self, app: Starlette, api: ApiRoutes, rest: ASGIApp | None = None) -> None:
        self.app = app
        self.rest = rest or app
        self.state = app.state  # as on the Starlette app (app.state.gateway)
        self.routes: dict[str, Handler] = {
            "/v1/messages": api.hot_messages,
            "/v1/chat/completions": api.hot_chat,
            "/chat/completions": api.hot_chat,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            handler = self.routes.get(scope["path"])
            if handler is not None:
                scope["app"] = self.app
                response = None
                try:
                    response = await handler(scope, receive)
                    await response(scope, receive, send)
                except Exception:
                    if getattr(response, "started", False):
                        raise  # the reply is under way: the server closes the connection
                    await _internal_error(scope, receive, send)
                return
        await self.rest(scope, receive, send)


async def _internal_error(scope: Scope, receive: Receive, send: Send) -> None:
    request_id = new_request_id()
    log.exception("unexpected error on POST %s (request %s)", scope["path"], request_id)
    message = f"internal gateway error; see the gateway log for request {request_id}"
    if scope["path"].endswith("/chat/completions"):
        body = openai_error_body(message, "api_error")
    else:
        body = anthropic_error_body("api_error", message, request_id)
    await JSONBytes(body, status_code=500, headers={"request-id": request_id})(scope, receive, send)
