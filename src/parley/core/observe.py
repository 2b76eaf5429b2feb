"""Typed hooks for what observers (metrics, traces, logging callbacks) read off a request.

- Guardrails list what they did as `GuardrailAction`s (core.context) in `ctx.guardrail_actions`;
  the metrics count them (`parley_guardrail_actions_total` by guardrail and action) and traces show
  them as span events.
- `OUTBOUND_HEADERS`: headers the tracer wants on the upstream request of the attempt being made
  (its `traceparent`); the HTTP client adds them. It is a context variable because the attempt runs
  in the request's own task, below the layers that know about traces; unset, it costs one lookup.
"""

from __future__ import annotations

from contextvars import ContextVar

OUTBOUND_HEADERS: ContextVar[dict[str, str] | None] = ContextVar("parley_outbound_headers", default=None)
