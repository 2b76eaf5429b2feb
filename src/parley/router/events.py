"""What observers of the router (metrics, traces) hear about: each upstream attempt, fallbacks and
cooldowns. `RouterEvents` does nothing; observers override what they need. A router with no
observers makes no calls."""

from __future__ import annotations

from dataclasses import dataclass

from parley.core.context import RequestContext
from parley.core.deployment import Target


@dataclass(frozen=True, slots=True)
class AttemptEnd:
    """How one attempt ended: `status` is the HTTP status (0 when none: cancelled, a bug),
    `ok` whether it is the reply the client gets, `error` the error type when it failed."""

    status: int
    ok: bool
    error: str | None = None
    retried: bool = False  # the router tries again (this deployment or another) after it


class RouterEvents:
    def attempt_started(self, ctx: RequestContext, target: Target) -> None:
        """Called right before the upstream request of an attempt is sent, in the request's task."""

    def attempt_ended(self, ctx: RequestContext, target: Target, end: AttemptEnd) -> None:
        """Called once per attempt, before the next one starts (a streamed reply: at its first byte)."""

    def fallback(self, ctx: RequestContext, model: str, group: str) -> None:
        """The router moves from the requested `model` to the fallback model group `group`."""

    def cooldown(self, deployment_id: str, seconds: float) -> None:
        """A deployment starts cooling down after failures."""
