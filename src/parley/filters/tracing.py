"""OpenTelemetry traces by the GenAI semantic conventions: one SERVER span per client request and
one CLIENT span per upstream attempt, exported over OTLP/HTTP (the standard OTEL_* environment).

The SERVER span continues the client's `traceparent` (W3C trace context) and starts when the
request arrived; each attempt's CLIENT span is its child, and its context is what the upstream
receives as `traceparent`. A failed attempt's span ends when the router moves on; the attempt that
serves the reply ends with the request, so a stream's span ends when the stream does. Message
content is recorded only with `otel_capture_content` (or the standard
OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true), as the filters after guardrails see it.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from parley.config.observability import ObservabilitySettings
from parley.core.context import RequestContext, StateKey
from parley.core.deployment import Target
from parley.core.observe import OUTBOUND_HEADERS
from parley.core.stream import UpstreamReply
from parley.core.tasks import Tasks
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
    server: Span
    attempt: Span | None = None  # the attempt in progress, or the one that served the reply
    token: contextvars.Token[dict[str, str] | None] | None = None  # OUTBOUND_HEADERS while it runs


_TRACE: StateKey[_Trace] = StateKey("tracing.trace")


def default_provider() -> TracerProvider:
    """A TracerProvider from the standard environment (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
    OTEL_TRACES_SAMPLER, OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT / HEADERS / TIMEOUT, OTEL_BSP_*),
    exporting over OTLP/HTTP protobuf from a background thread."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "parley"}
    provider = TracerProvider(resource=Resource.create(attributes), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


class Tracing(Filter, RouterEvents):
    phase = Phase.METRICS

    def __init__(
        self,
        settings: ObservabilitySettings,
        tasks: Tasks,
        processors: Sequence[SpanProcessor] = (),
    ) -> None:
        if processors:  # tests and embedders bring their own (e.g. an in-memory exporter)
            self.provider = TracerProvider(resource=Resource.create({"service.name": "parley"}))
            for p in processors:
                self.provider.add_span_processor(p)
        else:
            self.provider = default_provider()
        self.tracer = self.provider.get_tracer("parley")
        self.propagator = TraceContextTextMapPropagator()
        self.capture = settings.otel_capture_content
        tasks.on_shutdown(self.stop)

    async def stop(self) -> None:
        await asyncio.to_thread(self.provider.shutdown)  # flushes what is queued (bounded by OTEL_BSP_*)

    # spans -----------------------------------------------------------------------------------
    def _trace(self, ctx: RequestContext) -> _Trace:
        trace = ctx.state.get(_TRACE)
        if trace is None:
            parent = self.propagator.extract(ctx.headers)
            passthrough = ctx.route.startswith("/anthropic")
            server = self.tracer.start_span(
                ctx.route if passthrough else f"POST {ctx.route}",
                context=parent,
                kind=SpanKind.SERVER,
                start_time=int(ctx.started_at * 1e9),
                attributes={
                    "http.route": ctx.route,
                    "gen_ai.operation.name": OPERATION.get(ctx.route, "chat"),
                    "parley.request_id": ctx.request_id,
                },
            )
            trace = _Trace(server)
            ctx.state.put(_TRACE, trace)
        return trace

    async def on_request(self, ctx: RequestContext, body: dict[str, Any] | None) -> None:
        server = self._trace(ctx).server
        if ctx.model:
            server.set_attribute("gen_ai.request.model", ctx.model)
        if body is not None:
            for field, name in _REQUEST_PARAMS:
                value = body.get(field)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    server.set_attribute(name, value)
            if self.capture and isinstance(body.get("messages"), list):
                server.set_attribute("gen_ai.input.messages", orjson.dumps(body["messages"]).decode())
                if "system" in body:
                    server.set_attribute("gen_ai.system_instructions", orjson.dumps(body["system"]).decode())
        return None

    async def on_response(self, ctx: RequestContext, reply: UpstreamReply) -> None:
        if not self.capture or reply.body is None or reply.status >= 400:
            return
        try:
            data = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            return
        output = data.get("content", data.get("choices")) if isinstance(data, dict) else None
        if output is not None:
            self._trace(ctx).server.set_attribute("gen_ai.output.messages", orjson.dumps(output).decode())

    def attempt_started(self, ctx: RequestContext, target: Target) -> None:
        trace = self._trace(ctx)
        dep = target.deployment
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": OPERATION.get(ctx.route, "chat"),
            "gen_ai.provider.name": PROVIDER_NAMES.get(dep.provider, dep.provider),
            "gen_ai.request.model": target.upstream_model,
            "parley.deployment.id": dep.id,
            "parley.attempt": ctx.attempts + 1,
        }
        if dep.api_base:
            url = urlsplit(dep.api_base)
            attributes["server.address"] = url.hostname or ""
            attributes["server.port"] = url.port or (443 if url.scheme == "https" else 80)
        span = self.tracer.start_span(
            f"{attributes['gen_ai.operation.name']} {target.upstream_model}",
            context=set_span_in_context(trace.server, Context()),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, context=set_span_in_context(span, Context()))
        trace.attempt, trace.token = span, OUTBOUND_HEADERS.set(carrier)

    def attempt_ended(self, ctx: RequestContext, target: Target, end: AttemptEnd) -> None:
        trace = ctx.state.get(_TRACE)
        if trace is None or trace.attempt is None:
            return
        if trace.token is not None:
            OUTBOUND_HEADERS.reset(trace.token)
            trace.token = None
        span = trace.attempt
        if end.status:
            span.set_attribute("http.response.status_code", end.status)
        if end.ok and end.status < 400:
            return  # ends with the request (a stream: when it ends), with the usage
        span.set_attribute("error.type", end.error or f"http_{end.status}")
        span.set_status(Status(StatusCode.ERROR))
        span.end()
        trace.attempt = None

    def fallback(self, ctx: RequestContext, model: str, group: str) -> None:
        self._trace(ctx).server.add_event(
            "parley.fallback", {"gen_ai.request.model": model, "fallback": group}
        )

    def on_done(self, ctx: RequestContext) -> None:
        trace = self._trace(ctx)
        end = _end_ns(ctx)
        result = _result_attributes(ctx)
        if trace.attempt is not None:
            trace.attempt.set_attributes(result)
            if ctx.status >= 400 or ctx.error_type:
                trace.attempt.set_attribute("error.type", ctx.error_type or f"http_{ctx.status}")
                trace.attempt.set_status(Status(StatusCode.ERROR))
            trace.attempt.end(end)
            trace.attempt = None
        server = trace.server
        server.set_attributes(result)
        server.set_attribute("http.response.status_code", ctx.status)
        if ctx.deployment is not None:
            server.set_attribute("parley.deployment.id", ctx.deployment.id)
        server.set_attribute("parley.attempts", ctx.attempts)
        for action in ctx.guardrail_actions:
            server.add_event("parley.guardrail", {"guardrail": action.guardrail, "action": action.action})
        if ctx.status >= 400 or ctx.error_type:
            server.set_attribute("error.type", ctx.error_type or f"http_{ctx.status}")
            if ctx.status >= 500 or ctx.status < 400:
                server.set_status(Status(StatusCode.ERROR, ctx.error_message))
        server.end(end)


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
