"""OpenTelemetry traces by the GenAI semantic conventions: one SERVER span per client request and
one CLIENT span per upstream attempt, exported over OTLP/HTTP (the standard OTEL_* environment).

The SERVER span continues the client's `traceparent` (W3C trace context) and starts when the
request arrived; each attempt's CLIENT span is its child, and its context is what the upstream
receives as `traceparent`. A failed attempt's span ends when the router moves on; the attempt that
serves the reply ends with the request, so a stream's span ends when the stream does. The request
path records raw fields only (`filters.trace_record.Trace`: ids, perf_counter times, targets, the
outcome as one plain tuple); a background thread (`filters.otlp`) turns them into attributes, wall
clock times and the wire format. The request hook is the synchronous `observe_request` (no coroutine).
Message content is recorded only with `otel_capture_content` (or the standard
OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true), as the filters after guardrails see it.
"""

from __future__ import annotations

import asyncio
import os
import time
from random import getrandbits
from time import perf_counter
from typing import Any, Literal

import orjson

from parley.config.observability import ObservabilitySettings
from parley.core.context import RequestContext, StateKey
from parley.core.deployment import Target
from parley.core.observe import OUTBOUND_HEADERS
from parley.core.stream import UpstreamReply
from parley.core.tasks import Tasks
from parley.filters.otlp import Encoder, OtlpExporter
from parley.filters.trace_record import Attempt, Trace, span_writer
from parley.pipeline.filter import Filter, Phase
from parley.router.events import AttemptEnd, RouterEvents

# the request's trace, or False when the sampler left it out
_TRACE: StateKey[Trace | Literal[False]] = StateKey("tracing.trace")


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
        self.exporter = OtlpExporter(_resource(), encoder=Encoder(span_writer()))
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
        trace = ctx.state.get(_TRACE)
        if trace is None:
            return self._start(ctx)
        return trace or None

    def _start(self, ctx: RequestContext) -> Trace | None:
        headers = ctx.headers
        traceparent = headers.get("traceparent")
        parent = parse_traceparent(traceparent) if traceparent else None
        if parent is None:
            # ids are never all zeros, which W3C trace context forbids
            trace_id = (getrandbits(128) or 1).to_bytes(16, "big")
            if not (self.always_on or self._sampled(trace_id, None)):
                ctx.state.put(_TRACE, False)
                return None
            span_id = (getrandbits(64) or 1).to_bytes(8, "big")
            trace = Trace(trace_id, span_id, b"", ctx.route, ctx.request_id, ctx.started_at, ctx.started)
        else:
            if not self._sampled(parent[0], parent):
                ctx.state.put(_TRACE, False)  # the client's own traceparent still goes upstream
                return None
            trace = Trace(
                parent[0],
                (getrandbits(64) or 1).to_bytes(8, "big"),
                parent[1],
                ctx.route,
                ctx.request_id,
                ctx.started_at,
                ctx.started,
                # W3C: `tracestate` goes with the `traceparent` it came with (none without one)
                headers.get("tracestate"),
            )
        ctx.state.put(_TRACE, trace)
        return trace

    def _sampled(self, trace_id: bytes, parent: tuple[bytes, bytes, bool] | None) -> bool:
        if parent is not None and self.parent_based:
            return parent[2]
        if self.always_on:
            return True
        result = self.sampler.should_sample(None, int.from_bytes(trace_id, "big"), "request")
        return bool(result.decision.is_sampled())

    def observe_request(self, ctx: RequestContext, body: dict[str, Any] | None) -> None:
        trace = ctx.state.get(_TRACE)  # `_trace` inline: one call less per request
        if trace is None:
            trace = self._start(ctx)
        if trace:
            trace.model = ctx.model
            if body is not None:
                get = body.get
                trace.params = (get("max_tokens"), get("temperature"), get("top_p"), get("top_k"))

    def attempt_started(self, ctx: RequestContext, target: Target) -> None:
        trace = ctx.state.get(_TRACE)  # `_trace` inline
        if trace is None:
            trace = self._start(ctx)
        if not trace:
            return
        span_id = (getrandbits(64) or 1).to_bytes(8, "big")
        trace.attempts.append(Attempt(span_id, perf_counter(), target, ctx.attempts + 1))
        # bytes.hex in an f-string: a third of what formatting ints as hex costs
        header = {"traceparent": f"00-{trace.trace_id.hex()}-{span_id.hex()}-01"}
        if trace.state:
            header["tracestate"] = trace.state
        trace.token = OUTBOUND_HEADERS.set(header)

    def attempt_ended(self, ctx: RequestContext, target: Target, end: AttemptEnd) -> None:
        trace = ctx.state.get(_TRACE)
        if not trace or not trace.attempts:
            return
        if trace.token is not None:
            OUTBOUND_HEADERS.reset(trace.token)
            trace.token = None
        attempt = trace.attempts[-1]
        attempt.status = end.status
        if not (end.ok and end.status < 400):  # the serving attempt ends with the request
            attempt.error = end.error or f"http_{end.status}"
            attempt.end = perf_counter()

    def fallback(self, ctx: RequestContext, model: str, group: str) -> None:
        trace = self._trace(ctx)
        if trace is not None:
            event = (time.time_ns(), "parley.fallback", {"gen_ai.request.model": model, "fallback": group})
            if trace.events is None:
                trace.events = [event]
            else:
                trace.events.append(event)

    def on_done(self, ctx: RequestContext) -> None:
        trace = ctx.state.get(_TRACE)
        if trace is None:
            trace = self._start(ctx)
        if not trace:
            return
        ended, u, sniffer, dep = ctx.ended_at, ctx.usage, ctx.stream_sniffer, ctx.deployment
        actions = ctx.guardrail_actions
        trace.outcome = (  # an `Outcome`, as a plain tuple: the exporter reads it by name
            ended if ended is not None else perf_counter(),
            ctx.status,
            ctx.error_type,
            ctx.error_message,
            ctx.attempts,
            dep.id if dep is not None else None,
            u.input_tokens,
            u.output_tokens,
            u.cache_read_input_tokens,
            u.cache_creation_input_tokens,
            ctx.response_model or (sniffer.model if sniffer is not None else None) or ctx.upstream_model,
            ctx.stop_reason or (sniffer.stop_reason if sniffer is not None else None),
            ctx.stream,
            ctx.first_byte_at if ctx.stream else None,
            tuple(actions) if actions else (),
        )
        self.exporter.submit(trace, 1 + len(trace.attempts))


class CapturingTracing(Tracing):
    """Tracing that also records message content (`otel_capture_content`): the input as the filters
    after guardrails see it, and the output of whole replies."""

    def observe_request(self, ctx: RequestContext, body: dict[str, Any] | None) -> None:
        super().observe_request(ctx, body)
        trace = ctx.state.get(_TRACE)
        if trace and body is not None and isinstance(body.get("messages"), list):
            content = trace.content = trace.content or []
            content.append(("gen_ai.input.messages", orjson.dumps(body["messages"]).decode()))
            if "system" in body:
                content.append(("gen_ai.system_instructions", orjson.dumps(body["system"]).decode()))

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
            content = trace.content = trace.content or []
            content.append(("gen_ai.output.messages", orjson.dumps(output).decode()))


def tracing(settings: ObservabilitySettings, tasks: Tasks) -> Tracing:
    """The tracing filter the settings ask for (with content capture or without: a filter without
    `on_response` is not called for replies at all)."""
    return (CapturingTracing if settings.otel_capture_content else Tracing)(settings, tasks)
