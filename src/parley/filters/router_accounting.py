"""Close each request's books with the router.

The deployment that served a request stays "in flight" (for least-busy) until the reply is over,
which for a stream is long after `Router.run` returned; its tokens count towards the deployment's
per-minute `tpm` capacity. Both are settled here, when the request is done.
"""

from __future__ import annotations

from parley.core.context import RequestContext
from parley.pipeline.filter import Filter, Phase
from parley.router.health import Health
from parley.router.run import INFLIGHT


class RouterAccounting(Filter):
    phase = Phase.ACCOUNTING

    def __init__(self, health: Health) -> None:
        self.health = health

    def on_done(self, ctx: RequestContext) -> None:
        dep_id = ctx.state.pop(INFLIGHT)
        if dep_id is not None:
            u = ctx.usage
            self.health.end(
                dep_id,
                u.input_tokens + u.output_tokens + u.cache_creation_input_tokens + u.cache_read_input_tokens,
            )
