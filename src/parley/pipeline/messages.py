"""The Anthropic Messages front door: `/v1/messages` and `/v1/messages/count_tokens`.

The request is already in the hub shape; each try of the router hands it to the provider of the
chosen deployment, which speaks its own wire protocol and answers in the hub shape.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from parley.core.context import RequestContext
from parley.core.deployment import Target
from parley.core.stream import UpstreamReply
from parley.pipeline.body import check_messages_request, parse_object
from parley.pipeline.lifecycle import Endpoint, Pipeline
from parley.pipeline.metadata import apply_request_metadata
from parley.providers.base import HubCall
from parley.translate.fields import check_thread

# The one allow-list of upstream reply headers a client may see, on every route; the rest (cookies,
# our organisation's id and rate limits, CDN and proxy headers) stay with us.
REPLY_HEADERS = (
    "content-type",
    "content-disposition",
    "cache-control",
    "etag",
    "last-modified",
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
)


def reply_headers(ctx: RequestContext, upstream: dict[str, str]) -> dict[str, str]:
    headers = {k: upstream[k] for k in REPLY_HEADERS if k in upstream}
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


class MessagesEndpoint(Endpoint):
    api = "anthropic"

    def __init__(self, pipeline: Pipeline, *, count_tokens: bool = False, query: str = "") -> None:
        self.pipeline = pipeline
        self.count_tokens = count_tokens
        self.route = "/v1/messages/count_tokens" if count_tokens else "/v1/messages"
        self.query = query

    def parse(self, ctx: RequestContext, raw: bytes) -> dict[str, Any]:
        body = parse_object(raw)
        self.check(ctx, body)
        return body

    def check(self, ctx: RequestContext, body: dict[str, Any]) -> None:
        check_messages_request(body, needs_max_tokens=not self.count_tokens)
        ctx.model = body["model"]
        ctx.stream = bool(body.get("stream")) and not self.count_tokens

    def prepare(self, ctx: RequestContext, body: dict[str, Any] | None) -> None:
        assert body is not None
        ctx.targets = self.pipeline.router.targets(body["model"], ctx.allowed_models)  # 404 before any filter
        apply_request_metadata(ctx, body, gateway_cache_controls=True)

    async def send(self, ctx: RequestContext, body: dict[str, Any] | None, raw: bytes) -> UpstreamReply:
        assert body is not None

        def attempt(target: Target) -> Awaitable[UpstreamReply]:
            return self.attempt(ctx, target, body, raw)

        return await self.pipeline.router.run(ctx, body["model"], attempt)

    def attempt(
        self, ctx: RequestContext, target: Target, body: dict[str, Any], raw: bytes
    ) -> Awaitable[UpstreamReply]:
        """One try on the deployment the router chose (the provider's coroutine, not another one
        around it)."""
        api = target.deployment.api
        check_thread(body, api)
        call = HubCall(target, body, raw or None, ctx.headers, self.count_tokens, self.query)
        return self.pipeline.providers[api].messages(ctx, call)

    def reply_headers(self, ctx: RequestContext, reply: UpstreamReply) -> dict[str, str]:
        return reply_headers(ctx, reply.headers)
