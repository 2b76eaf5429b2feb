"""A traced request as the request path leaves it, and its spans as the exporter thread writes them.

On the request path a trace is a few raw fields: ids, perf_counter times, the attempts' targets and
outcomes, and (when the request ends) what the context knew, as one plain tuple (`Outcome`).
Attribute names and values by the GenAI semantic conventions are put together here, in the
exporter's thread, straight into the OTLP wire format: the request path builds no dictionaries,
and what repeats from request to request (a route's or a deployment's attributes) is encoded once
and cached by the encoder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from parley.core.context import GuardrailAction
from parley.core.deployment import Target
from parley.core.native import native
from parley.filters.otlp import (
    CLIENT,
    REQUEST_ID_KEY,
    SERVER,
    STATUS_ERROR,
    USAGE_KEYS,
    Encoder,
    NativeWriter,
    attribute_key,
    float_attribute,
    span_field,
    span_head,
    usage_attributes,
)

# parley's provider prefixes -> gen_ai.provider.name (well-known values where the spec has one)
PROVIDER_NAMES = {"anthropic": "anthropic", "openai": "openai", "deepseek": "deepseek", "groq": "groq"}
OPERATION = {"/v1/messages/count_tokens": "count_tokens"}  # everything else is "chat"
PARAMS = (
    "gen_ai.request.max_tokens",
    "gen_ai.request.temperature",
    "gen_ai.request.top_p",
    "gen_ai.request.top_k",
)


class Attempt:
    """One upstream attempt: its CLIENT span. Times are `time.perf_counter()` readings, made wall
    clock nanoseconds by the exporter (`Trace.ns`)."""

    __slots__ = ("end", "error", "number", "span_id", "start", "status", "target")

    def __init__(self, span_id: bytes, start: float, target: Target, number: int) -> None:
        self.span_id = span_id
        self.start = start
        self.target = target
        self.number = number
        self.end = 0.0  # set when the attempt fails and ends before the request
        self.status = 0  # the upstream's HTTP status (0: none)
        self.error: str | None = None  # error.type of an attempt that failed and ended before the request


class Outcome(NamedTuple):
    """What the request context knew when the request ended. The request path stores it as a plain
    tuple in this order (`Trace.outcome`); the exporter reads it by name."""

    ended: float  # perf_counter
    status: int
    error_type: str | None
    error_message: str | None
    attempts: int
    deployment_id: str | None
    input_tokens: int
    output_tokens: int
    cache_read: int
    cache_write: int
    response_model: str | None
    stop_reason: str | None
    stream: bool
    first_byte: float | None  # perf_counter at a stream's first byte (None: not a stream)
    guardrails: tuple[GuardrailAction, ...]


class Trace:
    """A request's trace: the SERVER span's ids and what it collects until the request ends.
    `started_at` (wall clock) and `started` (perf_counter) are the request context's, so every
    perf_counter reading maps to wall clock time in the exporter."""

    __slots__ = (
        "attempts",
        "content",
        "events",
        "model",
        "outcome",
        "params",
        "parent_id",
        "request_id",
        "route",
        "span_id",
        "started",
        "started_at",
        "state",
        "token",
        "trace_id",
    )

    def __init__(
        self,
        trace_id: bytes,
        span_id: bytes,
        parent_id: bytes,  # the client's span (empty: a new trace)
        route: str,
        request_id: str,
        started_at: float,
        started: float,
        state: str | None = None,  # the client's `tracestate`, passed on with its `traceparent`
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.route = route
        self.request_id = request_id
        self.started_at = started_at
        self.started = started
        self.state = state
        self.model: str | None = None
        self.params: tuple[Any, ...] = ()  # max_tokens, temperature, top_p, top_k as the body had them
        self.content: list[tuple[str, str]] | None = None  # captured messages (opt-in)
        self.attempts: list[Attempt] = []
        self.events: list[tuple[int, str, dict[str, Any]]] | None = None  # fallbacks
        self.token: Any = None  # OUTBOUND_HEADERS' reset token while an attempt runs
        self.outcome: tuple[Any, ...] = ()  # an `Outcome`'s fields, set when the request ends

    def ns(self, perf: float) -> int:
        """A perf_counter reading of this request as wall clock nanoseconds."""
        return int((self.started_at + (perf - self.started)) * 1e9)

    def write(self, encoder: Encoder, out: list[bytes]) -> None:
        """The SERVER span and one CLIENT span per attempt (exporter thread)."""
        out_ = Outcome._make(self.outcome)
        end_ns = self.ns(out_.ended)
        trace_id, span_id = self.trace_id, self.span_id
        first = out_.first_byte
        ttft = first - self.started if first is not None else None
        span = self._server(encoder, out_, trace_id, span_id, end_ns, ttft)
        out.append(span_field(len(span)))
        out.append(span)
        attempts = self.attempts
        last = len(attempts) - 1
        for i, attempt in enumerate(attempts):
            if i == last and attempt.error is None:  # the attempt that served: it ends with the request
                span = self._served(encoder, attempt, out_, trace_id, span_id, end_ns, ttft)
            else:
                span = self._ended(encoder, attempt, trace_id, span_id)
            out.append(span_field(len(span)))
            out.append(span)

    def _server(
        self, enc: Encoder, out: Outcome, trace_id: bytes, span_id: bytes, end_ns: int, ttft: float | None
    ) -> bytes:
        route, params = self.route, self.params
        key = (route, self.model, out.status, out.attempts, out.deployment_id, out.response_model, params)
        try:  # the parameters' types too: 1 and 1.0 are equal keys but not equal attributes
            typed = (*key, tuple(map(type, params)))
            constants = enc.groups.get(typed) or enc.remember(typed, _server_constants(enc, self, out))
        except TypeError:  # a parameter that is not a number (unhashable): left out, as below
            constants = _server_constants(enc, self, out)
        head = span_head(trace_id, span_id, self.parent_id, SERVER, int(self.started_at * 1e9), end_ns)
        request_id = enc.request_id(self.request_id)
        failed = out.status >= 400 or out.error_type is not None
        if ttft is None and not (failed or self.content or self.events or out.guardrails):
            return head + constants + request_id  # the common case
        parts = [head, constants, request_id]
        if ttft is not None:
            parts.append(float_attribute(_TTFT, ttft))
        if self.content:
            parts.extend(enc.pair(9, name, text) for name, text in self.content)
        if failed:
            parts.append(enc.pair(9, "error.type", out.error_type or f"http_{out.status}"))
            if out.status >= 500 or out.status < 400:
                parts.append(enc.status(STATUS_ERROR, out.error_message or ""))
        if self.events:
            parts.extend(enc.event(at, event, attributes) for at, event, attributes in self.events)
        for action in out.guardrails:
            attributes = {
                "guardrail": action.guardrail,
                "action": action.action,
                "target": action.target,
                "count": action.count,
            }
            parts.append(enc.event(end_ns, "parley.guardrail", attributes))
        return b"".join(parts)

    def _ended(self, enc: Encoder, attempt: Attempt, trace_id: bytes, parent: bytes) -> bytes:
        """The span of an attempt that failed and ended before the request."""
        target, error = attempt.target, attempt.error
        head = span_head(
            trace_id,
            attempt.span_id,
            parent,
            CLIENT,
            self.ns(attempt.start),
            self.ns(attempt.end) if attempt.end else 0,  # 0: never ended (as before)
        )
        operation = OPERATION.get(self.route, "chat")
        dep_id, model, number = target.deployment.id, target.upstream_model, attempt.number
        key = ("ended", dep_id, model, operation, number, attempt.status, error)
        blob = enc.groups.get(key) or enc.remember(
            key, _attempt_constants(enc, attempt, operation, None, error)
        )
        return head + blob

    def _served(
        self,
        enc: Encoder,
        attempt: Attempt,
        out: Outcome,
        trace_id: bytes,
        parent: bytes,
        end_ns: int,
        ttft: float | None,
    ) -> bytes:
        """The span of the attempt that gave the reply: it ends with the request."""
        target, status = attempt.target, attempt.status
        error = None
        if out.status >= 400 or out.error_type is not None:
            error = out.error_type or f"http_{out.status}"
        operation = OPERATION.get(self.route, "chat")
        key = (
            target.deployment.id,
            target.upstream_model,
            operation,
            attempt.number,
            status,
            out.response_model,
            out.stop_reason,
            out.stream,
            error,
        )
        blob = enc.groups.get(key) or enc.remember(
            key, _attempt_constants(enc, attempt, operation, out, error)
        )
        head = span_head(trace_id, attempt.span_id, parent, CLIENT, self.ns(attempt.start), end_ns)
        input_tokens, output_tokens, cache_read, cache_write = (
            out.input_tokens,
            out.output_tokens,
            out.cache_read,
            out.cache_write,
        )
        if input_tokens or output_tokens or cache_read or cache_write:
            usage = usage_attributes(
                input_tokens + cache_read + cache_write, output_tokens, cache_read, cache_write
            )
            if ttft is None:
                return head + blob + usage
            return head + blob + usage + float_attribute(_TTFT, ttft)
        if ttft is None:
            return head + blob
        return head + blob + float_attribute(_TTFT, ttft)


_TTFT = attribute_key("gen_ai.response.time_to_first_chunk")


def _server_constants(enc: Encoder, trace: Trace, out: Outcome) -> bytes:
    """The SERVER span's name and the attributes that repeat from request to request."""
    route = trace.route
    attributes: dict[str, Any] = {"http.route": route, "gen_ai.operation.name": OPERATION.get(route, "chat")}
    if trace.model:
        attributes["gen_ai.request.model"] = trace.model
    for name, value in zip(PARAMS, trace.params, strict=False):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            attributes[name] = value
    attributes["http.response.status_code"] = out.status
    attributes["parley.attempts"] = out.attempts
    if out.deployment_id is not None:
        attributes["parley.deployment.id"] = out.deployment_id
    if out.response_model:
        attributes["gen_ai.response.model"] = out.response_model
    name = route if route.startswith("/anthropic") else f"POST {route}"
    return enc.span_name(name) + enc.attributes(9, attributes)


def _attempt_constants(
    enc: Encoder, attempt: Attempt, operation: str, served: Outcome | None, error: str | None
) -> bytes:
    """A CLIENT span's name and attributes but the usage and timing: the deployment's, the
    attempt's number and status, and (the attempt that served) the response model, finish reasons
    and stream flag; its error when the attempt or the request failed."""
    dep, target = attempt.target.deployment, attempt.target
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": PROVIDER_NAMES.get(dep.provider, dep.provider),
        "gen_ai.request.model": target.upstream_model,
        "parley.deployment.id": dep.id,
    }
    if dep.api_base:
        url = urlsplit(dep.api_base)
        attributes["server.address"] = url.hostname or ""
        attributes["server.port"] = url.port or (443 if url.scheme == "https" else 80)
    attributes["parley.attempt"] = attempt.number
    if attempt.status:
        attributes["http.response.status_code"] = attempt.status
    if served is not None:
        if served.response_model:
            attributes["gen_ai.response.model"] = served.response_model
        if served.stop_reason:
            attributes["gen_ai.response.finish_reasons"] = [served.stop_reason]
        if served.stream:
            attributes["gen_ai.request.stream"] = True
    name = enc.span_name(f"{operation} {target.upstream_model}")
    if error is None:
        return name + enc.attributes(9, attributes)
    attributes["error.type"] = error
    return name + enc.attributes(9, attributes) + enc.status(STATUS_ERROR, "")


def span_writer(env: Mapping[str, str] = os.environ) -> NativeWriter | None:
    """The compiled writer of a trace's common case (`_spans.c`), or None when it was not built or
    PARLEY_NATIVE=0; it writes the same bytes as `Trace.write`."""
    module = native("parley.filters._spans", env)
    if module is None:
        return None
    writer: NativeWriter = module.SpanWriter(
        Trace, Attempt, Target, OPERATION, "chat", REQUEST_ID_KEY, _TTFT, USAGE_KEYS
    )
    return writer
