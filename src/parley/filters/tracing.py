"""OpenTelemetry traces by the GenAI semantic conventions: one SERVER span per client request and
one CLIENT span per upstream attempt, exported over OTLP/HTTP (the standard OTEL_* environment).

The SERVER span continues the client's `traceparent` (W3C trace context) and starts when the
request arrived; each attempt's CLIENT span is its child, and its context is what the upstream
receives as `traceparent`. A failed attempt's span ends when the router moves on; the attempt that
serves the reply ends with the request, so a stream's span ends when the stream does. The request
path records raw fields only (`filters.trace_record.Trace`: ids, times, targets, a snapshot of the
outcome); a background thread (`filters.otlp`) turns them into attributes and the wire format.
Message content is recorded only with `otel_capture_content` (or the standard
OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true), as the filters after guardrails see it.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

import orjson

from parley.config.observability import ObservabilitySettings
from parley.core.context import RequestContext, StateKey
from parley.core.deployment import Target
from parley.core.observe import OUTBOUND_HEADERS
from parley.core.stream import UpstreamReply
from parley.core.tasks import Tasks
from parley.filters.otlp import OtlpExporter
from parley.filters.trace_record import OPERATION, Attempt, Outcome, Trace
from parley.pipeline.filter import Filter, Phase
from parley.router.events import AttemptEnd, RouterEvents

_TRACE: StateKey[Trace] = StateKey("tracing.trace")
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
        tasks.on_startup(self.start)
        tasks.on_shutdown(self.stop)

    async def start(self) -> None:
        self.exporter.start()

    async def stop(self) -> None:
        await asyncio.to_thread(self.exporter.shutdown)  # sends what is queued

    def _trace(self, ctx: RequestContext) -> Trace | None:
        """The request's trace, started on first use; None when the sampler leaves it out."""
        state = ctx.state
        trace = state.get(_TRACE)
        if trace is not None or state.get(_LEFT_OUT):
            return trace
        parent = parse_traceparent(ctx.headers.get("traceparent"))
        trace_id = parent[0] if parent else _new_id(128)
        if not self._sampled(trace_id, parent):
            state.put(_LEFT_OUT, True)  # the client's own traceparent still goes upstream
            return None
        trace = Trace(
            trace_id,
            _new_id(64),
            parent[1] if parent else b"",
            ctx.route,
            ctx.request_id,
            int(ctx.started_at * 1e9),
            # W3C: `tracestate` goes with the `traceparent` it came with (none without one)
            ctx.headers.get("tracestate") if parent else None,
        )
        state.put(_TRACE, trace)
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
        if trace is not None:
            trace.model = ctx.model
            if body is not None:
                get = body.get
                trace.params = (get("max_tokens"), get("temperature"), get("top_p"), get("top_k"))
        return None

    def attempt_started(self, ctx: RequestContext, target: Target) -> None:
        trace = self._trace(ctx)
        if trace is None:
            return
        span_id = _new_id(64)
        operation = OPERATION.get(ctx.route, "chat")
        trace.attempts.append(Attempt(span_id, time.time_ns(), target, operation, ctx.attempts + 1))
        header = {"traceparent": traceparent(trace.trace_id, span_id)}
        if trace.state:
            header["tracestate"] = trace.state
        trace.token = OUTBOUND_HEADERS.set(header)

    def attempt_ended(self, ctx: RequestContext, target: Target, end: AttemptEnd) -> None:
        trace = ctx.state.get(_TRACE)
        if trace is None or not trace.attempts:
            return
        if trace.token is not None:
            OUTBOUND_HEADERS.reset(trace.token)
            trace.token = None
        attempt = trace.attempts[-1]
        attempt.status = end.status
        if not (end.ok and end.status < 400):  # the serving attempt ends with the request
            attempt.error = end.error or f"http_{end.status}"
            attempt.end_ns = time.time_ns()

    def fallback(self, ctx: RequestContext, model: str, group: str) -> None:
        trace = self._trace(ctx)
        if trace is not None:
            trace.events.append(
                (time.time_ns(), "parley.fallback", {"gen_ai.request.model": model, "fallback": group})
            )

    def on_done(self, ctx: RequestContext) -> None:
        trace = self._trace(ctx)
        if trace is None:
            return
        trace.outcome = _outcome(ctx)
        self.exporter.submit(trace, 1 + len(trace.attempts))


class CapturingTracing(Tracing):
    """Tracing that also records message content (`otel_capture_content`): the input as the filters
    after guardrails see it, and the output of whole replies."""

    async def on_request(self, ctx: RequestContext, body: dict[str, Any] | None) -> None:
        await super().on_request(ctx, body)
        trace = ctx.state.get(_TRACE)
        if trace is not None and body is not None and isinstance(body.get("messages"), list):
            trace.content.append(("gen_ai.input.messages", orjson.dumps(body["messages"]).decode()))
            if "system" in body:
                trace.content.append(("gen_ai.system_instructions", orjson.dumps(body["system"]).decode()))
        return None

    async def on_response(self, ctx: RequestContext, reply: UpstreamReply) -> None:
        if reply.body is None or reply.status >= 400:
            return
        trace = self._trace(ctx)
        try:
            data = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            return
        output = data.get("content", data.get("choices")) if isinstance(data, dict) else None
        if trace is not None and output is not None:
            trace.content.append(("gen_ai.output.messages", orjson.dumps(output).decode()))


def tracing(settings: ObservabilitySettings, tasks: Tasks) -> Tracing:
    """The tracing filter the settings ask for (with content capture or without: a filter without
    `on_response` is not called for replies at all)."""
    return (CapturingTracing if settings.otel_capture_content else Tracing)(settings, tasks)


def _new_id(bits: int) -> bytes:
    """A random trace (128-bit) or span (64-bit) id; never all zeros, which W3C trace context
    forbids."""
    return (random.getrandbits(bits) or 1).to_bytes(bits // 8, "big")


def _outcome(ctx: RequestContext) -> Outcome:
    ended = ctx.ended_at if ctx.ended_at is not None else time.perf_counter()
    u, sniffer = ctx.usage, ctx.stream_sniffer
    first = ctx.first_byte_at
    return Outcome(
        int((ctx.started_at + (ended - ctx.started)) * 1e9),
        ctx.status,
        ctx.error_type,
        ctx.error_message,
        ctx.attempts,
        ctx.deployment.id if ctx.deployment is not None else None,
        (u.input_tokens, u.output_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens),
        ctx.response_model or (sniffer.model if sniffer is not None else None) or ctx.upstream_model,
        ctx.stop_reason or (sniffer.stop_reason if sniffer is not None else None),
        ctx.stream,
        first - ctx.started if ctx.stream and first is not None else None,
        tuple(ctx.guardrail_actions),
    )
