"""`/anthropic/*`: every Anthropic endpoint in its native format, with key swap, cost and logs.

Any method and path under `/anthropic/` goes to `anthropic_passthrough.api_base` (default
https://api.anthropic.com) with the query string, the body bytes (minus `litellm_metadata`) and the
client's headers (minus credentials and hop-by-hop). Replies stream back unbuffered. On the side:
usage from `/v1/messages` (JSON or SSE), a log row for everything, `results_url` of batches rewritten
to point here, and batch results priced once per batch (a stable spend id) at the batch rate.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from parley.config import PassthroughSettings
from parley.core.context import RequestContext
from parley.core.errors import GatewayError
from parley.core.stream import ChunkSource, UpstreamReply, WrappedSource
from parley.core.usage import Usage
from parley.pipeline.body import parse_object
from parley.pipeline.filter import Authenticator
from parley.pipeline.lifecycle import Endpoint, Pipeline
from parley.pipeline.messages import REPLY_HEADERS
from parley.pipeline.metadata import apply_request_metadata
from parley.providers.anthropic import DEFAULT_VERSION, forwardable_headers, note_json_reply, observe_reply
from parley.transport.http import HttpClient

# POST routes whose body parley reads to check and bill: parsed strictly, refused if not JSON.
_JSON_ROUTES = frozenset({"/v1/messages", "/v1/messages/count_tokens", "/v1/messages/batches"})
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
MAX_UPLOAD = 500 * 1024 * 1024  # Anthropic's Files API limit
_BATCH = re.compile(r"^/v1/messages/batches/([^/]+)(/results|/cancel)?$")


class PassthroughEndpoint(Endpoint):
    """One request under `/anthropic/`: its method, path and query are the endpoint."""

    api = "anthropic"

    def __init__(
        self,
        pipeline: Pipeline,
        settings: PassthroughSettings,
        http: HttpClient,
        method: str,
        path: str,
        query: str,
        public_base: str,
    ) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.http = http
        self.method = method
        self.refusal: GatewayError | None = None
        try:
            self.path = canonical_path(path)  # the one form routed, checked, billed and forwarded
        except GatewayError as e:
            self.path, self.refusal = path, e
        self.query = query
        self.public_base = public_base  # where clients reach /anthropic, for batch results URLs
        self.route = "/anthropic" + _route_name(self.path)
        self.upstream_headers: dict[str, str] = {}

    @property
    def max_body(self) -> int | None:  # type: ignore[override]
        """File uploads may be as large as Anthropic's Files API takes; the rest as any request."""
        return MAX_UPLOAD if self.method == "POST" and self.path.startswith("/v1/files") else None

    async def authenticate(self, ctx: RequestContext, auth: Authenticator) -> None:
        """Authenticate the client and choose the credentials sent upstream."""
        if self.refusal is not None:
            raise self.refusal
        headers = forwardable_headers(ctx.headers)
        headers.setdefault("anthropic-version", DEFAULT_VERSION)
        self.upstream_headers = headers
        if self.settings.forward_client_key:
            gateway_key = ctx.headers.get("x-parley-api-key")
            if auth.enabled or gateway_key:
                client_headers = ctx.headers  # authenticate the gateway key, not the Anthropic one
                ctx.headers = {"x-api-key": gateway_key} if gateway_key else {}
                try:
                    await auth.authenticate(ctx)
                finally:
                    ctx.headers = client_headers
            for name in ("x-api-key", "authorization"):
                if ctx.headers.get(name):
                    headers[name] = ctx.headers[name]
            return
        await auth.authenticate(ctx)
        if self.settings.api_key is None:
            raise GatewayError(
                502,
                "the /anthropic pass-through has no upstream key: set "
                "ANTHROPIC_API_KEY or anthropic_passthrough.api_key",
                "api_error",
            )
        headers["x-api-key"] = self.settings.api_key

    def parse(self, ctx: RequestContext, raw: bytes) -> dict[str, Any] | None:
        if self.method in ("GET", "HEAD"):
            raw = b""
        if self.method == "POST" and self.path in _JSON_ROUTES:
            body: Any = parse_object(raw)  # whatever the content type claims: these are JSON
        elif not raw or "json" not in ctx.headers.get("content-type", "json"):
            return None
        else:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return None  # not ours to judge (an endpoint we do not bill): Anthropic answers it
        if not isinstance(body, dict):
            return None
        if isinstance(body.get("model"), str):
            ctx.model = body["model"]
        ctx.stream = body.get("stream") is True
        if self.path == "/v1/messages/batches":
            ctx.batch_models = _batch_models(body)
        return body

    def prepare(self, ctx: RequestContext, body: dict[str, Any] | None) -> None:
        apply_request_metadata(ctx, body)

    async def send(self, ctx: RequestContext, body: dict[str, Any] | None, raw: bytes) -> UpstreamReply:
        if self.method in ("GET", "HEAD"):
            raw = b""
        if ctx.body_changed and body is not None:  # litellm_metadata removed, or max_tokens capped
            raw = orjson.dumps(body)
        url = self.settings.api_base + self.path + ("?" + self.query if self.query else "")
        reply = await self.http.send(
            self.method, url, self.upstream_headers, raw or None, self.settings.timeout, stream=True
        )
        self._observe(ctx, reply)
        return reply

    def reply_headers(self, ctx: RequestContext, reply: UpstreamReply) -> dict[str, str]:
        out = {k: reply.headers[k] for k in (*REPLY_HEADERS, "request-id") if k in reply.headers}
        out.update(ctx.response_headers)  # what filters add: max-tokens cap, rate-limit state
        out.setdefault("request-id", ctx.request_id)  # Anthropic's own id, when it sent one
        out["x-parley-request-id"] = ctx.request_id
        return out

    def _observe(self, ctx: RequestContext, reply: UpstreamReply) -> None:
        """Attach the accounting each kind of route needs."""
        path = self.path
        batch = _BATCH.match(path)
        if path == "/v1/messages":
            if reply.source is not None or reply.status < 400:
                observe_reply(ctx, reply)
        elif batch and batch.group(2) == "/results" and reply.status < 400:
            ctx.spend_id = f"batch_results:{batch.group(1)}"
            ctx.price_tier = "batch"
            if reply.source is not None:
                reply.source = BatchResultsSource(reply.source, ctx)
            elif reply.body is not None:
                _tally_batch_lines(ctx, reply.body.split(b"\n"))
        elif path.startswith("/v1/messages/batches") and reply.body and reply.status < 400:
            reply.body = _rewrite_results_urls(reply.body, self.public_base)
        if reply.status >= 400 and reply.body is not None:
            note_json_reply(ctx, UpstreamReply(reply.status, {}, body=reply.body))


def _batch_models(body: dict[str, Any]) -> list[str]:
    """The `params.model` of each batch item (each is checked against the key like a request's)."""
    items = body.get("requests")
    models: list[str] = []
    for item in items if isinstance(items, list) else ():
        params = item.get("params") if isinstance(item, dict) else None
        model = params.get("model") if isinstance(params, dict) else None
        if isinstance(model, str) and model not in models:
            models.append(model)
    return models


def canonical_path(path: str) -> str:
    """`path` with escapes of unreserved characters decoded and `.`, `..` and empty segments
    removed (RFC 3986), so `/v1/./messages` and `/v1/%2e/messages` are `/v1/messages` for the
    checks as they are for the upstream. A path that climbs above the root is refused."""
    path = _ESCAPE.sub(lambda m: c if (c := chr(int(m.group(1), 16))) in _UNRESERVED else m.group(0), path)
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not segments:
                raise GatewayError(400, "the path climbs above /anthropic/", "invalid_request_error")
            segments.pop()
            continue
        segments.append(segment)
    trailing = "/" if path.endswith("/") and segments else ""
    return "/" + "/".join(segments) + trailing


def _route_name(path: str) -> str:
    """A low-cardinality route name for logs: ids replaced by placeholders."""
    path = re.sub(r"/msgbatch_[A-Za-z0-9]+", "/{batch_id}", path)
    return re.sub(r"/file_[A-Za-z0-9]+", "/{file_id}", path)


def _rewrite_results_urls(body: bytes, base: str) -> bytes:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    listed = data.get("data") if isinstance(data, dict) else None
    items: list[Any] = listed if isinstance(listed, list) else [data]
    for item in items:
        url = item.get("results_url") if isinstance(item, dict) else None
        if isinstance(url, str) and "/v1/messages/batches/" in url:
            item["results_url"] = base + url[url.index("/v1/messages/batches/") :]
    return orjson.dumps(data)


def _tally_batch_lines(ctx: RequestContext, lines: list[bytes]) -> None:
    by_model = ctx.usage_by_model
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


class BatchResultsSource(WrappedSource):
    """Relays JSONL batch results untouched while adding up each message's usage."""

    __slots__ = ("_tail", "ctx")

    def __init__(self, inner: ChunkSource, ctx: RequestContext) -> None:
        super().__init__(inner)
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
