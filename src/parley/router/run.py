"""The router's entry point: choose a deployment for a request and make the attempt.

`Router.run` is what every route calls; retries, fallbacks, cooldowns and load balancing live
behind it so routes stay the same as the routing gets smarter.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from parley.context import RequestContext
from parley.errors import GatewayError
from parley.providers.base import UpstreamReply
from parley.router.table import ModelTable, Target

Attempt = Callable[[Target], Awaitable[UpstreamReply]]


class Router:
    def __init__(self, table: ModelTable) -> None:
        self.table = table

    def targets(self, model: str) -> list[Target]:
        targets = self.table.resolve(model)
        if not targets:
            served = ", ".join(self.table.names()) or "none"
            raise GatewayError(404, f"model: {model!r} is not served here; models served: {served}",
                               "not_found_error")
        return targets

    async def run(self, ctx: RequestContext, model: str, attempt: Attempt) -> UpstreamReply:
        """Send the request to a deployment serving `model`; `attempt` makes one try on a target."""
        target = self.targets(model)[0]
        ctx.deployment = target.deployment
        ctx.upstream_model = target.upstream_model
        ctx.attempts += 1
        return await attempt(target)
