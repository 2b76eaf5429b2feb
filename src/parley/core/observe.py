"""Typed hooks for what observers (metrics, traces, logging callbacks) read off a request.

- `GuardrailAction`: a guardrail filter records what it did with `record_guardrail(ctx, ...)`;
  the metrics filter counts them (`parley_guardrail_actions_total`) and traces show them.
- `OUTBOUND_HEADERS`: headers the tracer wants on the upstream request of the attempt being made
  (its `traceparent`); the HTTP client adds them. It is a context variable because the attempt runs
  in the request's own task, below the layers that know about traces; unset, it costs one lookup.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from parley.core.context import RequestContext

GUARDRAIL_ACTIONS = ("allowed", "flagged", "masked", "blocked")

OUTBOUND_HEADERS: ContextVar[dict[str, str] | None] = ContextVar("parley_outbound_headers", default=None)


@dataclass(frozen=True, slots=True)
class GuardrailAction:
    guardrail: str  # the guardrail's configured name
    action: str  # one of GUARDRAIL_ACTIONS


def record_guardrail(ctx: RequestContext, guardrail: str, action: str) -> None:
    """Note that `guardrail` acted on this request (`action` in GUARDRAIL_ACTIONS)."""
    if action not in GUARDRAIL_ACTIONS:
        raise ValueError(f"guardrail action must be one of {GUARDRAIL_ACTIONS}, got {action!r}")
    ctx.guardrail_actions.append(GuardrailAction(guardrail, action))
