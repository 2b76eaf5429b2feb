"""One structured log line per request."""

from __future__ import annotations

import logging

import orjson

from parley.core.context import RequestContext
from parley.pipeline.filter import Filter, Phase


class AccessLog(Filter):
    phase = Phase.LOGGING

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("parley.access")

    def on_done(self, ctx: RequestContext) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        dep = ctx.deployment
        ttft = ctx.ttft_ms
        self.logger.info(
            orjson.dumps(
                {
                    "request_id": ctx.request_id,
                    "route": ctx.route,
                    "model": ctx.model,
                    "deployment": dep.id if dep is not None else None,
                    "status": ctx.status,
                    "latency_ms": round(ctx.latency_ms, 2),
                    "ttft_ms": round(ttft, 2) if ttft else None,
                    "input_tokens": ctx.usage.input_tokens,
                    "output_tokens": ctx.usage.output_tokens,
                    "cache_read_tokens": ctx.usage.cache_read_input_tokens,
                    "cache_write_tokens": ctx.usage.cache_creation_input_tokens,
                    "stream": ctx.stream,
                    "error": ctx.error_type,
                }
            ).decode()
        )
