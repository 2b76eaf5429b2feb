"""Calls through the gateway core in process: the same dispatch, router and translators as the server."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

import orjson

from parley.config import PROVIDERS, Config, build_config
from parley.core.context import RequestContext
from parley.core.errors import GatewayError, sdk_error, status_error
from parley.core.sse import SSEDecoder
from parley.core.stream import ChunkSource, UpstreamReply
from parley.gateway import Gateway, build_gateway
from parley.pipeline.chat import ChatEndpoint
from parley.pipeline.lifecycle import Endpoint
from parley.pipeline.messages import MessagesEndpoint
from parley.sdk.objects import Record, wrap

Parser = Callable[[ChunkSource], AsyncGenerator[Record, None]]

# Per-provider environment defaults: (key variable, base URL variables)
_ENV = {
    "anthropic": ("ANTHROPIC_API_KEY", ("ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL")),
    "openai": ("OPENAI_API_KEY", ("OPENAI_BASE_URL", "OPENAI_API_BASE")),
}
CALL_OPTIONS = ("api_key", "api_base", "timeout", "extra_headers", "num_retries")


def adhoc_config(model: str, options: Mapping[str, Any]) -> Config:
    """A one-deployment config for `provider/name`, with keys and bases from options or the env."""
    provider = model.partition("/")[0]
    if provider not in PROVIDERS or "/" not in model:
        known = ", ".join(sorted(PROVIDERS))
        raise status_error(400, f"model {model!r}: expected provider/name with provider one of {known}")
    params: dict[str, Any] = {"model": model}
    key_env, base_envs = _ENV.get(PROVIDERS[provider][0], (None, ()))
    api_key = options.get("api_key") or (os.environ.get(key_env) if key_env else None)
    api_base = options.get("api_base") or next((os.environ[e] for e in base_envs if os.environ.get(e)), None)
    for name, value in (
        ("api_key", api_key),
        ("api_base", api_base),
        ("timeout", options.get("timeout")),
        ("extra_headers", options.get("extra_headers")),
    ):
        if value is not None:
            params[name] = value
    router = {"num_retries": options["num_retries"]} if options.get("num_retries") is not None else {}
    try:
        return build_config(
            {"model_list": [{"model_name": model, "params": params}], "router_settings": router}, "sdk"
        )
    except ValueError as e:
        raise status_error(400, str(e)) from None


def split_options(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(request body, call options) from the keyword arguments of a create call."""
    options = {k: kwargs.pop(k) for k in CALL_OPTIONS if k in kwargs}
    extra_body = kwargs.pop("extra_body", None)
    body = {k: v for k, v in kwargs.items() if v is not None}
    if extra_body:
        body.update(extra_body)
    return body, options


async def create_message(gw: Gateway, body: dict[str, Any], headers: Mapping[str, str]) -> Any:
    """One Messages call: a Record shaped like anthropic's Message, or an async event iterator."""
    ctx = RequestContext(api="anthropic", route="sdk:/v1/messages", headers=dict(headers))
    return await _create(gw, ctx, MessagesEndpoint(gw.pipeline), body, anthropic_events)


async def create_completion(gw: Gateway, body: dict[str, Any], headers: Mapping[str, str]) -> Any:
    """One Chat Completions call: a Record shaped like openai's ChatCompletion, or async chunks."""
    ctx = RequestContext(api="openai", route="sdk:/v1/chat/completions", headers=dict(headers))
    return await _create(gw, ctx, ChatEndpoint(gw.pipeline), body, openai_chunks)


async def _create(
    gw: Gateway, ctx: RequestContext, endpoint: Endpoint, body: dict[str, Any], parse: Parser
) -> Any:
    """Check, send through the gateway's pipeline, and shape the reply (JSON with `cost`, or a stream)."""
    try:
        endpoint.check(ctx, body)
        reply = await gw.pipeline.process(endpoint, ctx, body, orjson.dumps(body))
    except GatewayError as error:
        gw.pipeline.finish(ctx)
        raise sdk_error(error) from None
    if reply.source is None:
        gw.pipeline.finish(ctx)
        return with_cost(_json_result(reply), gw, ctx)
    return EventStream(gw, ctx, reply.source, parse)


def with_cost(result: Record, gw: Gateway, ctx: RequestContext) -> Record:
    result.__dict__["cost"] = call_cost(gw, ctx)
    return result


def call_cost(gw: Gateway, ctx: RequestContext) -> float:
    """USD of the call at the bundled list prices (per-deployment overrides applied)."""
    return gw.prices.for_deployment(ctx.deployment, ctx.upstream_model or ctx.model).cost(ctx.usage)


def _json_result(reply: UpstreamReply) -> Record:
    try:
        data = orjson.loads(reply.body or b"null")
    except orjson.JSONDecodeError:
        data = None
    if reply.status >= 400 or not isinstance(data, dict):
        error = data.get("error") if isinstance(data, dict) else None
        message = str(error.get("message")) if isinstance(error, dict) else f"HTTP {reply.status}"
        error_type = error.get("type") if isinstance(error, dict) else None
        raise status_error(reply.status if reply.status >= 400 else 502, message, data, error_type)
    return wrap(data)


async def anthropic_events(source: ChunkSource) -> AsyncGenerator[Record, None]:
    """Anthropic stream events (pings skipped) as Records; an `error` event raises."""
    decoder = SSEDecoder()
    while (chunk := await source.next_chunk()) is not None:
        for event in decoder.feed(chunk):
            if event.event in (None, "ping"):
                continue
            payload = orjson.loads(event.data)
            if event.event == "error":
                _raise_stream_error(payload)
            yield wrap(payload)


async def openai_chunks(source: ChunkSource) -> AsyncGenerator[Record, None]:
    """`chat.completion.chunk` Records until `[DONE]`; an error frame raises."""
    decoder = SSEDecoder()
    while (chunk := await source.next_chunk()) is not None:
        for event in decoder.feed(chunk):
            if not event.data or event.data == "[DONE]":
                continue
            payload = orjson.loads(event.data)
            if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
                _raise_stream_error(payload)
            yield wrap(payload)


def _raise_stream_error(payload: dict) -> None:
    error = payload.get("error") or {}
    overloaded = error.get("type") in ("overloaded_error", "service_unavailable")
    raise status_error(
        529 if overloaded else 500, error.get("message", "stream error"), payload, error.get("type")
    )


class EventStream:
    """An async iterator of stream events; `cost` is set once the stream has ended."""

    def __init__(self, gw: Gateway, ctx: RequestContext, source: ChunkSource, parse: Parser) -> None:
        self._gw, self._ctx, self._source = gw, ctx, source
        self._events: AsyncGenerator[Record, None] = parse(source)
        self.on_close: list = []  # async callables run after the stream is closed
        self.cost: float | None = None
        self._closed = False

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Record:
        try:
            return await self._events.__anext__()
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._events.aclose()
        self._source.close()
        self.cost = call_cost(self._gw, self._ctx)
        self._gw.pipeline.finish(self._ctx)
        for callback in self.on_close:
            await callback()


class Engine:
    """A Gateway for in-process use; build one per config (Router) or per ad-hoc call."""

    def __init__(self, config: Config) -> None:
        self.gateway = build_gateway(config, batches=False)  # batches are run by servers
        self._started = False

    async def start(self) -> None:
        if not self._started:
            self._started = True
            await self.gateway.start()

    async def close(self) -> None:
        if self._started:
            await self.gateway.stop()
            self._started = False
        else:
            await self.gateway.http.close()
