"""Anthropic Messages API backend: the hub format itself, so bytes are forwarded.

The client's bytes go upstream with only `model` rewritten (and only when a filter or the model
name changed the body); headers and betas verbatim, key swapped. Usage is read off the reply on the
side: JSON bodies once, streams by `SniffingSource` (only usage-bearing frames are decoded).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping

import orjson

from parley.core.context import RequestContext
from parley.core.errors import anthropic_error_body, anthropic_type_for_status
from parley.core.sse import EventTooLarge, WholeEvents, encode_event
from parley.core.stream import ChunkSource, UpstreamCall, UpstreamReply, WrappedSource
from parley.core.usage import AnthropicStreamSniffer
from parley.providers.base import HubCall
from parley.transport.http import HttpClient, UpstreamBroken

DEFAULT_VERSION = "2023-06-01"

# Client headers never sent upstream (Envoy's strip list): credentials of any provider, hop-by-hop
# headers, the client's identity as proxies report it, and those the HTTP client sets itself.
CLIENT_ONLY_HEADERS = frozenset(
    {
        "x-api-key",
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-goog-api-key",
        "anthropic-api-key",
        "cookie",
        "host",
        "content-length",
        "connection",
        "proxy-connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "accept-encoding",
        "expect",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
    }
)


def forwardable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The client's headers minus the strip list, those its `Connection` header names (hop-by-hop
    by declaration) and parley's own `x-parley-*`."""
    connection = headers.get("connection")
    named = {n.strip().lower() for n in connection.split(",") if n.strip()} if connection else ()
    out: dict[str, str] = {}
    for k, v in headers.items():  # the request's headers keep repeats (as Starlette's Headers)
        if k in CLIENT_ONLY_HEADERS or k in named or k.startswith("x-parley-"):
            continue
        out[k] = out[k] + "," + v if k in out else v  # a repeated header (anthropic-beta) joins
    return out


def hub_body_bytes(call: HubCall, changed: bool) -> bytes:
    """The bytes to send: the client's own unless the model name or a filter changed the body."""
    model = call.target.upstream_model
    if call.raw is not None and call.body.get("model") == model and not changed:
        return call.raw
    return orjson.dumps(dict(call.body, model=model))


class AnthropicProvider:
    api = "anthropic"

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    def send(self, call: UpstreamCall) -> Awaitable[UpstreamReply]:
        """The call with Anthropic's headers and the deployment's key (the HTTP client's coroutine)."""
        headers = dict(call.headers)
        headers.setdefault("anthropic-version", DEFAULT_VERSION)
        headers.setdefault("content-type", "application/json")
        if call.target.deployment.api_key:
            headers["x-api-key"] = call.target.deployment.api_key
        return self.http.send_call(call, headers)

    async def messages(self, ctx: RequestContext, call: HubCall) -> UpstreamReply:
        upstream = UpstreamCall(
            call.target,
            call.path,
            hub_body_bytes(call, ctx.body_changed),
            forwardable_headers(call.headers),
            stream=call.stream,
            query=call.query,
        )
        return observe_reply(ctx, await self.send(upstream))


def observe_reply(ctx: RequestContext, reply: UpstreamReply) -> UpstreamReply:
    """Attach usage reading to an Anthropic reply (stream or JSON)."""
    if reply.source is not None:
        sniffer = ctx.stream_sniffer = AnthropicStreamSniffer(ctx.usage)
        reply.source = SniffingSource(reply.source, sniffer, ctx)
    elif reply.body is not None:
        note_json_reply(ctx, reply)
    return reply


def note_json_reply(ctx: RequestContext, reply: UpstreamReply) -> None:
    """Record usage or the error from an Anthropic JSON reply; replace garbage with a clear error.

    Well-formed Anthropic error bodies pass through unchanged (clients match on their wording).
    """
    try:
        data = orjson.loads(reply.body) if reply.body else None
    except orjson.JSONDecodeError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if reply.status < 400 and isinstance(data, dict) and error is None:
        ctx.usage.update(data.get("usage"))
        ctx.stop_reason, ctx.response_model = data.get("stop_reason"), data.get("model")
        return
    if reply.status >= 400 and isinstance(error, dict) and "type" in error:
        ctx.error_type = error.get("type")
        ctx.error_message = error.get("message")
        return
    snippet = (reply.body or b"")[:200].decode("utf-8", "replace")
    status = reply.status if reply.status >= 400 else 502
    error_type = anthropic_type_for_status(status)
    if reply.status >= 400:
        message = f"upstream returned HTTP {reply.status} with an unexpected body: {snippet!r}"
    elif isinstance(error, dict):  # an error sent as a success is still an error
        message = f"upstream sent an error with status {reply.status}: {error.get('message')}"
    else:
        message = f"upstream returned an invalid response body: {snippet!r}"
    ctx.error_type, ctx.error_message = error_type, message
    reply.status = status
    reply.body = anthropic_error_body(error_type, message, ctx.request_id)
    reply.headers["content-type"] = "application/json"


class SniffingSource(WrappedSource):
    """Passes native Anthropic SSE bytes through untouched while reading usage on the side.

    A stream that ends without `message_stop` or an `error` event (garbage, or cut short by the
    upstream) gets an `error` event at the end, so the client's SDK raises instead of returning a
    truncated message as if it were whole.
    """

    __slots__ = ("_ended", "_started", "ctx", "events", "sniffer")

    def __init__(self, inner: ChunkSource, sniffer: AnthropicStreamSniffer, ctx: RequestContext) -> None:
        super().__init__(inner)
        self.sniffer = sniffer
        self.ctx = ctx
        self.events = WholeEvents()
        self._ended = False
        self._started = False  # a whole event has been passed on

    at_boundary = True  # only whole events are passed on

    @property
    def at_eof(self) -> bool:
        return self.inner.at_eof and self._complete

    @property
    def _complete(self) -> bool:
        return self.sniffer.saw_stop or self.sniffer.error is not None

    async def next_chunk(self) -> bytes | None:
        if self._ended:
            return None
        chunk = await self.inner.next_chunk()
        if chunk is None:
            self._ended = True
            return None if self._complete else self._unfinished()
        self.sniffer.feed(chunk)
        if self.sniffer.error is not None and self.ctx.error_type is None:
            self.ctx.error_type = self.sniffer.error.get("type", "api_error")
        try:
            whole = self.events.feed(chunk)
        except EventTooLarge as e:
            raise UpstreamBroken(str(e)) from None
        self._started = self._started or bool(whole)
        return whole

    def _unfinished(self) -> bytes:
        if not self._started:  # nothing usable came at all: a bad gateway, before any byte
            raise UpstreamBroken("upstream stream ended without a complete event")
        ctx = self.ctx
        ctx.error_type = ctx.error_type or "api_error"
        ctx.error_message = "upstream stream ended before message_stop"
        frame = encode_event(
            "error",
            {
                "type": "error",
                "request_id": ctx.request_id,
                "error": {"type": "api_error", "message": ctx.error_message},
            },
        )
        return frame  # the partial event before it, if any, was never passed on
