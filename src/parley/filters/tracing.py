"""OpenTelemetry traces by the GenAI semantic conventions: one SERVER span per client request and
one CLIENT span per upstream attempt, exported over OTLP/HTTP (the standard OTEL_* environment).

The SERVER span continues the client's `traceparent` (W3C trace context) and starts when the
request arrived; each attempt's CLIENT span is its child, and its context is what the upstream
receives as `traceparent`. A failed attempt's span ends when the router moves on; the attempt that
serves the reply ends with the request, so a stream's span ends when the stream does. Spans are
plain records on the request path, exported by a background thread (`filters.otlp`). Message
content is recorded only with `otel_capture_content` (or the standard
OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true), as the filters after guardrails see it.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from parley.config.observability import ObservabilitySettings
from parley.core.context import RequestContext, StateKey
from parley.core.deployment import Target
from parley.core.observe import OUTBOUND_HEADERS
from parley.core.stream import UpstreamReply
from parley.core.tasks import Tasks
from parley.filters.otlp import CLIENT, SERVER, OtlpExporter, SpanRecord
from parley.pipeline.filter import Filter, Phase
from parley.router.events import AttemptEnd, RouterEvents

# parley's provider prefixes -> gen_ai.provider.name (well-known values where the spec has one)
PROVIDER_NAMES = {"anthropic": "anthropic", "openai": "openai", "deepseek": "deepseek", "groq": "groq"}
OPERATION = {"/v1/messages/count_tokens": "count_tokens"}  # everything else is "chat"
_REQUEST_PARAMS = (
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("top_k", "gen_ai.request.top_k"),
)


@dataclass(slots=True)
class _Trace:
    server: SpanRecord
    attempt: SpanRecord | None = None  # the attempt in progress, or the one that served the reply
    token: Any = None  # OUTBOUND_HEADERS' reset token while an attempt runs
    ended: list[SpanRecord] = field(default_factory=list)  # failed attempts, sent with the request
    state: str | None = None  # the client's `tracestate`, passed on with its `traceparent`


_TRACE: StateKey[_Trace] = StateKey("tracing.trace")
_LEFT_OUT: StateKey[bool] = StateKey("tracing.left_out")  # the sampler said no


def parse_traceparent(value: str | None) -> tuple[bytes, bytes, bool] | None:
    """(trace id, parent span id, sampled) from a W3C `traceparent`, or None when absent or invalid."""
    if not value or len(value) < 55:
        return None
    version, trace, span, flags = value[:55].split("-", 3) if value[2:3] == "-" else ("", "", "", "")
    try:
        trace_id, span_id, bits = bytes.fromhex(trace), bytes.fromhex(span), int(flags[:2], 16)
    except ValueError:
        return None
    if version == "ff" or len(trace_id) != 16 or len(span_id) != 8 or not any(trace_id) or not any(span_id):
        return None
    return trace_id, span_id, bool(bits & 1)


def traceparent(trace_id: bytes, span_id: bytes) -> str:
    return f"00-{trace_id.hex()}-{span_id.hex()}-01"


def _sampler() -> Any:
    """The SDK's sampler from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default: parent-based,
    always on)."""
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider(shutdown_on_exit=False).sampler


def _resource() -> dict[str, Any]:
    from opentelemetry.sdk.resources import Resource

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "parley"}
    return dict(Resource.create(attributes).attributes)


class Tracing(Filter, RouterEvents):
    phase = Phase.METRICS

    def __init__(self, settings: ObservabilitySettings, tasks: Tasks) -> None:
        self.exporter = OtlpExporter(_resource())
        self.sampler = _sampler()
        described = self.sampler.get_description()
        self.parent_based = described.startswith("ParentBased")
        # the default (parent-based, always on) decides a new trace without asking the SDK
        self.always_on = described == "AlwaysOnSampler" or described.startswith(
            "ParentBased{root:AlwaysOnSampler,"
        )
        self.capture = settings.otel_capture_content
        self._servers: dict[str, dict[str, Any]] = {}
        self._client_attributes: dict[tuple[str, str, str], dict[str, Any]] = {}  # bounded: deployments
        tasks.on_startup(self.start)
        tasks.on_shutdown(self.stop)

    async def start(self) -> None:
        self.exporter.start()

    async def stop(self) -> None:
        await asyncio.to_thread(self.exporter.shutdown)  # sends what is queued

    def _server_of(self, api_base: str) -> dict[str, Any]:
        """server.address and server.port of a deployment (parsed once per api_base)."""
        known = self._servers.get(api_base)
        if known is None:
            url = urlsplit(api_base)
            port = url.port or (443 if url.scheme == "https" else 80)
            known = self._servers[api_base] = {"server.address": url.hostname or "", "server.port": port}
        return known

    def _client_attributes_of(self, operation: str, target: Target) -> dict[str, Any]:
        """The attributes an attempt's span shares with every attempt on that deployment and model."""
        dep = target.deployment
        key = (operation, dep.id, target.upstream_model)
        known = self._client_attributes.get(key)
        if known is None:
            known = {
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": PROVIDER_NAMES.get(dep.provider, dep.provider),
                "gen_ai.request.model": target.upstream_model,
                "parley.deployment.id": dep.id,
            }
            if dep.api_base:
                known.update(self._server_of(dep.api_base))
            if len(self._client_attributes) < 4096:
                self._client_attributes[key] = known
        return known

    # spans -----------------------------------------------------------------------------------
    def _trace(self, ctx: RequestContext) -> _Trace | None:
        """The request's trace, started on first use; None when the sampler leaves it out."""
        trace = ctx.state.get(_TRACE)
        if trace is not None or ctx.state.get(_LEFT_OUT):
            return trace
        parent = parse_traceparent(ctx.headers.get("traceparent"))
        trace_id = parent[0] if parent else _new_id(128)
        if not self._sampled(trace_id, parent):
            ctx.state.put(_LEFT_OUT, True)  # the client's own traceparent still goes upstream
            return None
        passthrough = ctx.route.startswith("/anthropic")
        server = SpanRecord(
            ctx.route if passthrough else f"POST {ctx.route}",
            SERVER,
            trace_id,
            _new_id(64),
            parent[1] if parent else b"",
            int(ctx.started_at * 1e9),
            {
                "http.route": ctx.route,
                "gen_ai.operation.name": OPERATION.get(ctx.route, "chat"),
                "parley.request_id": ctx.request_id,
            },
        )
        # W3C: `tracestate` goes with the `traceparent` it came with (none without one)
        trace = _Trace(server, state=ctx.headers.get("tracestate") if parent else None)
        ctx.state.put(_TRACE, trace)
        return trace

    def _sampled(self, trace_id: bytes, parent: tuple[bytes, bytes, bool] | None) -> bool:
        if parent is not None and self.parent_based:
            return parent[2]
        if self.always_on:
            return True
        result = self.sampler.should_sample(None, int.from_bytes(trace_id, "big"), "request")
        return bool(result.decision.is_sampled())

    async def on_request(self, ctx: RequestContext, body: dict[str, Any] | None) -> None:
        trace = self._trace(ctx)
        if trace is None:
            return None
        attributes = trace.server.attributes
        if ctx.model:
            attributes["gen_ai.request.model"] = ctx.model
        if body is not None:
            for name, key in _REQUEST_PARAMS:
                value = body.get(name)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    attributes[key] = value
            if self.capture and isinstance(body.get("messages"), list):
                attributes["gen_ai.input.messages"] = orjson.dumps(body["messages"]).decode()
                if "system" in body:
                    attributes["gen_ai.system_instructions"] = orjson.dumps(body["system"]).decode()
        return None

    async def on_response(self, ctx: RequestContext, reply: UpstreamReply) -> None:
        if not self.capture or reply.body is None or reply.status >= 400:
            return
        trace = self._trace(ctx)
        try:
            data = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            return
        output = data.get("content", data.get("choices")) if isinstance(data, dict) else None
        if trace is not None and output is not None:
            trace.server.attributes["gen_ai.output.messages"] = orjson.dumps(output).decode()

    def attempt_started(self, ctx: RequestContext, target: Target) -> None:
        trace = self._trace(ctx)
        if trace is None:
            return
        operation = OPERATION.get(ctx.route, "chat")
        attributes = self._client_attributes_of(operation, target).copy()
        attributes["parley.attempt"] = ctx.attempts + 1
        server = trace.server
        span_id = _new_id(64)
        span = SpanRecord(
            f"{operation} {target.upstream_model}",
            CLIENT,
            server.trace_id,
            span_id,
            server.span_id,
            time.time_ns(),
            attributes,
        )
        header = {"traceparent": traceparent(server.trace_id, span_id)}
        if trace.state:
            header["tracestate"] = trace.state
        trace.attempt, trace.token = span, OUTBOUND_HEADERS.set(header)

    def attempt_ended(self, ctx: RequestContext, target: Target, end: AttemptEnd) -> None:
        trace = ctx.state.get(_TRACE)
        if trace is None or trace.attempt is None:
            return
        if trace.token is not None:
            OUTBOUND_HEADERS.reset(trace.token)
            trace.token = None
        span = trace.attempt
        if end.status:
            span.attributes["http.response.status_code"] = end.status
        if end.ok and end.status < 400:
            return  # ends with the request (a stream: when it ends), with the usage
        span.attributes["error.type"] = end.error or f"http_{end.status}"
        span.error()
        span.end_ns = time.time_ns()
        trace.ended.append(span)
        trace.attempt = None

    def fallback(self, ctx: RequestContext, model: str, group: str) -> None:
        trace = self._trace(ctx)
        if trace is not None:
            trace.server.events.append(
                (time.time_ns(), "parley.fallback", {"gen_ai.request.model": model, "fallback": group})
            )

    def on_done(self, ctx: RequestContext) -> None:
        trace = self._trace(ctx)
        if trace is None:
            return
        end = _end_ns(ctx)
        result = _result_attributes(ctx)
        failed = ctx.status >= 400 or ctx.error_type is not None
        submit = self.exporter.submit
        for span in trace.ended:
            submit(span)
        attempt = trace.attempt
        if attempt is not None:
            attempt.attributes.update(result)
            if failed:
                attempt.attributes["error.type"] = ctx.error_type or f"http_{ctx.status}"
                attempt.error()
            attempt.end_ns = end
            submit(attempt)
            trace.attempt = None
        server = trace.server
        attributes = server.attributes
        attributes["http.response.status_code"] = ctx.status
        attributes["parley.attempts"] = ctx.attempts
        if ctx.deployment is not None:
            attributes["parley.deployment.id"] = ctx.deployment.id
        for key in ("gen_ai.response.model", "gen_ai.response.time_to_first_chunk"):
            if key in result:
                attributes[key] = result[key]
        for action in ctx.guardrail_actions:
            server.events.append(
                (
                    end,
                    "parley.guardrail",
                    {
                        "guardrail": action.guardrail,
                        "action": action.action,
                        "target": action.target,
                        "count": action.count,
                    },
                )
            )
        if failed:
            attributes["error.type"] = ctx.error_type or f"http_{ctx.status}"
            if ctx.status >= 500 or ctx.status < 400:
                server.error(ctx.error_message)
        server.end_ns = end
        submit(server)


def _new_id(bits: int) -> bytes:
    """A random trace (128-bit) or span (64-bit) id; never all zeros, which W3C trace context
    forbids."""
    return (random.getrandbits(bits) or 1).to_bytes(bits // 8, "big")


def _end_ns(ctx: RequestContext) -> int:
    ended = ctx.ended_at if ctx.ended_at is not None else time.perf_counter()
    return int((ctx.started_at + (ended - ctx.started)) * 1e9)


def _result_attributes(ctx: RequestContext) -> dict[str, Any]:
    """Response model, usage (input includes cache reads and writes, as the conventions ask; each
    also on its own), finish reasons, time to first chunk."""
    u = ctx.usage
    out: dict[str, Any] = {}
    if u.input_tokens or u.output_tokens or u.cache_read_input_tokens or u.cache_creation_input_tokens:
        out["gen_ai.usage.input_tokens"] = (
            u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens
        )
        out["gen_ai.usage.output_tokens"] = u.output_tokens
        out["gen_ai.usage.cache_read.input_tokens"] = u.cache_read_input_tokens
        out["gen_ai.usage.cache_creation.input_tokens"] = u.cache_creation_input_tokens
    sniffer = ctx.stream_sniffer
    model = ctx.response_model or (sniffer.model if sniffer is not None else None) or ctx.upstream_model
    if model:
        out["gen_ai.response.model"] = model
    reason = ctx.stop_reason or (sniffer.stop_reason if sniffer is not None else None)
    if reason:
        out["gen_ai.response.finish_reasons"] = [reason]
    if ctx.stream and ctx.first_byte_at is not None:
        out["gen_ai.response.time_to_first_chunk"] = ctx.first_byte_at - ctx.started
    if ctx.stream:
        out["gen_ai.request.stream"] = True
    return out
