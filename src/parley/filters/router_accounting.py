"""Wire the router into a gateway, and close each request's books with it.

The deployment that served a request stays "in flight" (for least-busy) until the reply is over,
which for a stream is long after `Router.run` returned; its tokens count towards the deployment's
per-minute `tpm` capacity. Both are settled in `after_call`.
"""

from __future__ import annotations

import logging

from parley.core.context import RequestContext
from parley.pipeline.filter import Policy
from parley.router.health import Health
from parley.router.run import INFLIGHT_KEY, Router
from parley.router.settings import RouterSettings

log = logging.getLogger("parley.router")


class RouterAccounting(Policy):
    def __init__(self, health: Health) -> None:
        self.health = health

    def after_call(self, ctx: RequestContext) -> None:
        dep_id = ctx.extra.pop(INFLIGHT_KEY, None)
        if dep_id is not None:
            u = ctx.usage
            self.health.end(dep_id, u.input_tokens + u.output_tokens + u.cache_creation_input_tokens
                            + u.cache_read_input_tokens)


def install(gw) -> None:
    settings = RouterSettings.from_config(gw.config.router_settings)
    health = Health(settings, getattr(gw, "redis", None))
    gw.router = Router(gw.table, settings, health)
    for table in (settings.fallbacks, settings.context_window_fallbacks, settings.content_policy_fallbacks):
        for model, targets in table.items():
            for name in targets:
                if not gw.table.resolve(name):
                    log.warning("router_settings: fallback %r of %r is not a served model", name, model)
    gw.policies.append(RouterAccounting(health))
