"""`/anthropic/*`: every Anthropic endpoint in its native format, with key swap, cost and logs.

Any method and path under `/anthropic/` goes to `anthropic_passthrough.api_base` (default
https://api.anthropic.com) with the query string, the body bytes (minus `litellm_metadata`) and the
client's headers (minus credentials and hop-by-hop). Replies stream back unbuffered. On the side:
usage from `/v1/messages` (JSON or SSE), a log row for everything, `results_url` of batches rewritten
to point here, and batch results priced once per batch (a stable spend id) at the batch rate.
"""

from __future__ import annotations

import os
import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from parley.core.context import RequestContext
from parley.pipeline.messages import SniffingSource, note_json_reply
from parley.core.errors import GatewayError
from parley.gateway import Gateway
from parley.filters.metadata import apply_request_metadata
from parley.providers.anthropic import DEFAULT_VERSION, forwardable_headers
from parley.core.stream import UpstreamReply
from parley.server.body import read_body
from parley.server.relay import RelayResponse
from parley.server.responses import anthropic_error
from parley.core.usage import AnthropicStreamSniffer, Usage

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
MAX_BODY = 512 * 1024 * 1024  # Files API uploads go up to 500 MB
_BATCH = re.compile(r"^/v1/messages/batches/([^/]+)(/results|/cancel)?$")


class PassthroughSettings:
    def __init__(self, section: dict[str, Any]) -> None:
        self.api_base = str(section.get("api_base") or "https://api.anthropic.com").rstrip("/")
        key = section.get("api_key", os.environ.get("ANTHROPIC_API_KEY"))
        self.api_key: str | None = key if isinstance(key, str) and key else None
        self.forward_client_key = bool(section.get("forward_client_key", False))
        self.timeout = float(section.get("timeout", 600))


def install(gw: Gateway) -> None:
    passthrough = AnthropicPassthrough(gw)
    gw.route_extensions.append(lambda _gw: passthrough.routes())


class AnthropicPassthrough:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.settings = PassthroughSettings(gateway.config.section("anthropic_passthrough"))

    def routes(self) -> list[Route]:
        return [Route("/anthropic/{path:path}", self.handle, methods=METHODS)]

    async def handle(self, request: Request) -> Response:
        gw = self.gw
        path = "/" + request.path_params["path"]
        ctx = RequestContext(api="anthropic", route="/anthropic" + _route_name(path),
                             headers=request.headers)
        try:
            headers = await self._credentials(ctx, request)
            raw = await read_body(request, MAX_BODY) if request.method not in ("GET", "HEAD") else b""
            body = self._json_body(ctx, request, raw)
            await gw.before_call(ctx, body)
            if ctx.body_changed:  # litellm_metadata removed, or max_tokens capped by a budget
                raw = orjson.dumps(body)
            url = self.settings.api_base + path + ("?" + request.url.query if request.url.query else "")
            reply = await gw.http.send(request.method, url, headers, raw or None, self.settings.timeout,
                                       stream=True)
            self._observe(ctx, request, path, reply)
        except GatewayError as error:
            response = anthropic_error(ctx, error)
            gw.finish(ctx)
            return response
        out = dict(reply.headers)
        out.update(ctx.response_headers)  # what policies add: max-tokens cap, rate-limit state
        out.setdefault("request-id", ctx.request_id)
        out["x-parley-request-id"] = ctx.request_id
        return RelayResponse(gw, ctx, reply, out)

    async def _credentials(self, ctx: RequestContext, request: Request) -> dict[str, str]:
        """Authenticate the client and return the headers to send upstream."""
        headers = forwardable_headers(request.headers)
        headers.setdefault("anthropic-version", DEFAULT_VERSION)
        if self.settings.forward_client_key:
            gateway_key = request.headers.get("x-parley-api-key")
            if self.gw.auth.enabled or gateway_key:
                client_headers = ctx.headers  # authenticate the gateway key, not the Anthropic one
                ctx.headers = {"x-api-key": gateway_key} if gateway_key else {}
                try:
                    await self.gw.auth.authenticate(ctx)
                finally:
                    ctx.headers = client_headers
            for name in ("x-api-key", "authorization"):
                if request.headers.get(name):
                    headers[name] = request.headers[name]
            return headers
        await self.gw.auth.authenticate(ctx)
        if self.settings.api_key is None:
            raise GatewayError(502, "the /anthropic pass-through has no upstream key: set "
                                    "ANTHROPIC_API_KEY or anthropic_passthrough.api_key", "api_error")
        headers["x-api-key"] = self.settings.api_key
        return headers

    def _json_body(self, ctx: RequestContext, request: Request, raw: bytes) -> dict | None:
        if not raw or "json" not in request.headers.get("content-type", "json"):
            apply_request_metadata(ctx, None)
            return None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None  # not ours to judge: Anthropic answers it
        if not isinstance(body, dict):
            apply_request_metadata(ctx, None)
            return None
        apply_request_metadata(ctx, body)
        if isinstance(body.get("model"), str):
            ctx.model = body["model"]
        ctx.stream = body.get("stream") is True
        return body

    def _observe(self, ctx: RequestContext, request: Request, path: str, reply: UpstreamReply) -> None:
        """Attach the accounting each kind of route needs."""
        batch = _BATCH.match(path)
        if path == "/v1/messages":
            if reply.source is not None:
                reply.source = SniffingSource(reply.source, AnthropicStreamSniffer(ctx.usage), ctx)
            elif reply.body is not None and reply.status < 400:
                note_json_reply(ctx, reply)
        elif batch and batch.group(2) == "/results" and reply.status < 400:
            ctx.extra["spend_id"] = f"batch_results:{batch.group(1)}"
            ctx.extra["price_tier"] = "batch"
            if reply.source is not None:
                reply.source = BatchResultsSource(reply.source, ctx)
            elif reply.body is not None:
                _tally_batch_lines(ctx, reply.body.split(b"\n"))
        elif path.startswith("/v1/messages/batches") and reply.body and reply.status < 400:
            reply.body = _rewrite_results_urls(reply.body, str(request.base_url).rstrip("/") + "/anthropic")
        if reply.status >= 400 and reply.body is not None:
            note_json_reply(ctx, UpstreamReply(reply.status, {}, body=reply.body))


def _route_name(path: str) -> str:
    """A low-cardinality route name for logs: ids replaced by placeholders."""
    path = re.sub(r"/msgbatch_[A-Za-z0-9]+", "/{batch_id}", path)
    return re.sub(r"/file_[A-Za-z0-9]+", "/{file_id}", path)


def _rewrite_results_urls(body: bytes, base: str) -> bytes:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    items = data.get("data") if isinstance(data, dict) and isinstance(data.get("data"), list) else [data]
    for item in items:
        url = item.get("results_url") if isinstance(item, dict) else None
        if isinstance(url, str) and "/v1/messages/batches/" in url:
            item["results_url"] = base + url[url.index("/v1/messages/batches/"):]
    return orjson.dumps(data)


def _tally_batch_lines(ctx: RequestContext, lines: list[bytes]) -> None:
    by_model: dict[str, Usage] = ctx.extra.setdefault("usage_by_model", {})
    for line in lines:
        if not line.strip():
            continue
        try:
            result = orjson.loads(line).get("result") or {}
        except (orjson.JSONDecodeError, AttributeError):
            continue
        message = result.get("message") if result.get("type") == "succeeded" else None
        if not isinstance(message, dict):
            continue
        model = str(message.get("model") or "unknown")
        ctx.model = ctx.model or model
        by_model.setdefault(model, Usage()).update_add(message.get("usage"))
        ctx.usage.update_add(message.get("usage"))


class BatchResultsSource:
    """Relays JSONL batch results untouched while adding up each message's usage."""

    __slots__ = ("inner", "ctx", "_tail")

    def __init__(self, inner, ctx: RequestContext) -> None:
        self.inner = inner
        self.ctx = ctx
        self._tail = b""

    async def next_chunk(self) -> bytes | None:
        chunk = await self.inner.next_chunk()
        if chunk is None:
            if self._tail:
                _tally_batch_lines(self.ctx, [self._tail])
                self._tail = b""
            return None
        *lines, self._tail = (self._tail + chunk).split(b"\n")
        _tally_batch_lines(self.ctx, lines)
        return chunk

    def close(self) -> None:
        self.inner.close()
