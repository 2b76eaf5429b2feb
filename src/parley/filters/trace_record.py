"""A traced request as the request path leaves it, and its spans as the exporter thread writes them.

On the request path a trace is a few raw fields: ids, times, the attempts' targets and outcomes,
and (when the request ends) a snapshot of what the context knew. Attribute names and values by the
GenAI semantic conventions are put together here, in the exporter's thread, straight into the
OTLP wire format: the request path builds no dictionaries, and what repeats from request to
request (a route's or a deployment's attributes) is encoded once and cached by the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from parley.core.context import GuardrailAction
from parley.core.deployment import Target
from parley.filters.otlp import (
    CLIENT,
    SERVER,
    STATUS_ERROR,
    Encoder,
    attribute_key,
    float_attribute,
    int_attribute,
    span_head,
    str_attribute,
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


@dataclass(slots=True)
class Attempt:
    """One upstream attempt: its CLIENT span."""

    span_id: bytes
    start_ns: int
    target: Target
    operation: str
    number: int
    end_ns: int = 0
    status: int = 0  # the upstream's HTTP status (0: none)
    error: str | None = None  # error.type of an attempt that failed and ended before the request


@dataclass(slots=True)
class Outcome:
    """What the request context knew when the request ended (copied on the request path)."""

    end_ns: int
    status: int
    error_type: str | None
    error_message: str | None
    attempts: int
    deployment_id: str | None
    usage: tuple[int, int, int, int]  # input, output, cache read, cache creation
    response_model: str | None
    stop_reason: str | None
    stream: bool
    ttft: float | None  # seconds to the first byte of a stream
    guardrails: tuple[GuardrailAction, ...]


@dataclass(slots=True)
class Trace:
    """A request's trace: the SERVER span's ids and what it collects until the request ends."""

    trace_id: bytes
    span_id: bytes
    parent_id: bytes  # the client's span (empty: a new trace)
    route: str
    request_id: str
    start_ns: int
    state: str | None = None  # the client's `tracestate`, passed on with its `traceparent`
    model: str | None = None
    params: tuple[Any, ...] = ()  # max_tokens, temperature, top_p, top_k as the body had them
    content: list[tuple[str, str]] = field(default_factory=list)  # captured messages (opt-in)
    attempts: list[Attempt] = field(default_factory=list)
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)  # fallbacks
    token: Any = None  # OUTBOUND_HEADERS' reset token while an attempt runs
    outcome: Outcome | None = None

    def encode(self, encoder: Encoder) -> list[bytes]:
        """The SERVER span and one CLIENT span per attempt (exporter thread)."""
        out = self.outcome
        assert out is not None  # submitted only once ended
        spans = [self._server(encoder, out)]
        last = len(self.attempts) - 1
        for i, attempt in enumerate(self.attempts):
            spans.append(self._client(encoder, attempt, out if i == last and attempt.error is None else None))
        return spans

    def _server(self, enc: Encoder, out: Outcome) -> bytes:
        route, params = self.route, self.params
        key = (route, self.model, out.status, out.attempts, out.deployment_id, out.response_model, params)
        try:  # the parameters' types too: 1 and 1.0 are equal keys but not equal attributes
            typed = (*key, tuple(map(type, params)))
            constants = enc.groups.get(typed) or enc.remember(typed, _server_constants(enc, self, out))
        except TypeError:  # a parameter that is not a number (unhashable): left out, as below
            constants = _server_constants(enc, self, out)
        parts = [
            span_head(self.trace_id, self.span_id, self.parent_id, SERVER, self.start_ns, out.end_ns),
            constants,
            str_attribute(_REQUEST_ID, self.request_id),
        ]
        if out.ttft is not None:
            parts.append(float_attribute(_TTFT, out.ttft))
        if self.content:
            parts.extend(enc.pair(9, name, text) for name, text in self.content)
        failed = out.status >= 400 or out.error_type is not None
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
            parts.append(enc.event(out.end_ns, "parley.guardrail", attributes))
        return b"".join(parts)

    def _client(self, enc: Encoder, attempt: Attempt, served: Outcome | None) -> bytes:
        """An attempt's span; `served` is the request's outcome when this attempt gave the reply."""
        target, number, status, error = attempt.target, attempt.number, attempt.status, attempt.error
        if served is None:
            head = span_head(
                self.trace_id, attempt.span_id, self.span_id, CLIENT, attempt.start_ns, attempt.end_ns
            )
            ended = (
                "ended",
                target.deployment.id,
                target.upstream_model,
                attempt.operation,
                number,
                status,
                error,
            )
            blob = enc.groups.get(ended) or enc.remember(ended, _attempt_constants(enc, attempt, None, error))
            return head + blob
        if served.status >= 400 or served.error_type is not None:
            error = served.error_type or f"http_{served.status}"
        head = span_head(
            self.trace_id, attempt.span_id, self.span_id, CLIENT, attempt.start_ns, served.end_ns
        )
        key = (
            target.deployment.id,
            target.upstream_model,
            attempt.operation,
            number,
            status,
            served.response_model,
            served.stop_reason,
            served.stream,
            error,
        )
        blob = enc.groups.get(key) or enc.remember(key, _attempt_constants(enc, attempt, served, error))
        parts = [head, blob]
        input_tokens, output_tokens, cache_read, cache_write = served.usage
        if input_tokens or output_tokens or cache_read or cache_write:
            parts.append(int_attribute(_INPUT, input_tokens + cache_read + cache_write))
            parts.append(int_attribute(_OUTPUT, output_tokens))
            parts.append(int_attribute(_CACHE_READ, cache_read))
            parts.append(int_attribute(_CACHE_WRITE, cache_write))
        if served.ttft is not None:
            parts.append(float_attribute(_TTFT, served.ttft))
        return b"".join(parts)


_REQUEST_ID = attribute_key("parley.request_id")
_TTFT = attribute_key("gen_ai.response.time_to_first_chunk")
_INPUT = attribute_key("gen_ai.usage.input_tokens")
_OUTPUT = attribute_key("gen_ai.usage.output_tokens")
_CACHE_READ = attribute_key("gen_ai.usage.cache_read.input_tokens")
_CACHE_WRITE = attribute_key("gen_ai.usage.cache_creation.input_tokens")


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


def _attempt_constants(enc: Encoder, attempt: Attempt, served: Outcome | None, error: str | None) -> bytes:
    """A CLIENT span's name and attributes but the usage and timing: the deployment's, the
    attempt's number and status, and (the attempt that served) the response model, finish reasons
    and stream flag; its error when the attempt or the request failed."""
    dep, target = attempt.target.deployment, attempt.target
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": attempt.operation,
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
    name = enc.span_name(f"{attempt.operation} {target.upstream_model}")
    if error is None:
        return name + enc.attributes(9, attributes)
    attributes["error.type"] = error
    return name + enc.attributes(9, attributes) + enc.status(STATUS_ERROR, "")
