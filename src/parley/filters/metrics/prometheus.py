"""Prometheus metrics: a METRICS-phase filter (whole requests, at `on_done`) that also listens to the
router (attempts, retries, fallbacks, cooldowns), and renders `/metrics`.

Labels are bounded: a model label is a configured model name (the deployment's group, or the
requested name when it is one of the configured names or aliases), anything else is `other`;
deployments are configured ids; key alias and team only with `metrics_key_labels`. Label children
are cached, so a request costs a few dictionary lookups and counter increments.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from parley.config.observability import ObservabilitySettings
from parley.core.context import RequestContext, StateKey
from parley.core.deployment import Target
from parley.core.tasks import Tasks
from parley.filters.metrics import procdir
from parley.filters.metrics.families import Families, make_families
from parley.pipeline.filter import Filter, Phase
from parley.router.events import AttemptEnd, RouterEvents
from parley.spend.pricing import PriceTable
from parley.spend.writer import SpendWriter
from parley.store.records import KeyRecord
from parley.store.redis_link import RedisLink

OTHER = "other"
# Pass-through routes come from the client's path: only these are labels, the rest `/anthropic/other`.
PASSTHROUGH_ROUTES = frozenset(
    "/anthropic" + p
    for p in (
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/messages/batches",
        "/v1/messages/batches/{batch_id}",
        "/v1/messages/batches/{batch_id}/results",
        "/v1/messages/batches/{batch_id}/cancel",
        "/v1/models",
        "/v1/files",
        "/v1/files/{file_id}",
        "/v1/files/{file_id}/content",
    )
)
SAMPLE_SECONDS = 1.0
_COUNTED: StateKey[str] = StateKey("metrics.in_flight")  # the route label counted in flight


class _Children:
    """`family.labels(*values)`, memoized (label sets are bounded)."""

    __slots__ = ("children", "family")

    def __init__(self, family: Any) -> None:
        self.family = family
        self.children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.family.labels(*values)
        return child


def route_label(route: str) -> str:
    if route.startswith("/anthropic") and route not in PASSTHROUGH_ROUTES:
        return "/anthropic/other"
    return route


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "error"


class PrometheusMetrics(Filter, RouterEvents):
    phase = Phase.METRICS

    def __init__(
        self,
        settings: ObservabilitySettings,
        model_names: set[str],
        prices: PriceTable,
        tasks: Tasks,
        redis: RedisLink | None = None,
    ) -> None:
        self.multiproc_dir = procdir.active()
        self.registry = None if self.multiproc_dir else CollectorRegistry()
        self.families: Families = make_families(self.registry, settings.metrics_key_labels)
        self.key_labels = settings.metrics_key_labels
        self.require_key = settings.metrics_require_key
        self.names = frozenset(model_names)
        self.prices = prices
        self.redis = redis
        self.writer: SpendWriter | None = None  # set by `watch_writer` when spend logs are on
        f = self.families
        self._requests, self._tokens, self._spend = (
            _Children(f.requests),
            _Children(f.tokens),
            _Children(f.spend),
        )
        self._latency, self._ttft, self._tpot = _Children(f.latency), _Children(f.ttft), _Children(f.tpot)
        self._in_flight, self._attempts = _Children(f.in_flight), _Children(f.attempts)
        self._seen_errors = (0, 0)  # (db, redis) errors already counted
        self._sampler: asyncio.Task[None] | None = None
        tasks.on_startup(self.start)
        tasks.on_shutdown(self.stop)

    def watch_writer(self, writer: SpendWriter) -> None:
        self.writer = writer

    # the request -----------------------------------------------------------------------------
    def model_label(self, ctx: RequestContext) -> str:
        if ctx.deployment is not None:
            return ctx.deployment.model_name
        return ctx.model if ctx.model in self.names else OTHER

    async def on_request(self, ctx: RequestContext, body: dict[str, Any] | None) -> None:
        route = route_label(ctx.route)
        self._in_flight(route).inc()
        ctx.state.put(_COUNTED, route)
        return None

    def on_done(self, ctx: RequestContext) -> None:
        counted = ctx.state.pop(_COUNTED)
        if counted is not None:
            self._in_flight(counted).dec()
        route = route_label(ctx.route)
        model = self.model_label(ctx)
        dep = ctx.deployment.id if ctx.deployment is not None else "none"
        keys = self._key_values(ctx) if self.key_labels else ()
        self._requests(route, model, dep, status_class(ctx.status), *keys).inc()
        self._count_usage(ctx, model, dep, keys)
        self._count_times(ctx, route, model)
        self._count_refusals(ctx, model)

    def _count_usage(self, ctx: RequestContext, model: str, dep: str, keys: tuple[str, ...]) -> None:
        u = ctx.usage
        for kind, n in (
            ("input", u.input_tokens),
            ("output", u.output_tokens),
            ("cache_read", u.cache_read_input_tokens),
            ("cache_write", u.cache_creation_input_tokens),
        ):
            if n:
                self._tokens(model, dep, kind).inc(n)
        cost = ctx.cost
        if cost is None and ctx.deployment is not None and (u.input_tokens or u.output_tokens):
            cost = self.prices.for_deployment(ctx.deployment, ctx.upstream_model or ctx.model).cost(u)
        if cost:
            self._spend(model, *keys).inc(cost)

    def _count_times(self, ctx: RequestContext, route: str, model: str) -> None:
        end = ctx.ended_at if ctx.ended_at is not None else time.perf_counter()
        total = end - ctx.started
        self._latency(route, model).observe(total)
        output = ctx.usage.output_tokens
        if ctx.stream and ctx.first_byte_at is not None and ctx.status < 400:
            self._ttft(model).observe(ctx.first_byte_at - ctx.started)
            if output > 1:
                self._tpot(model).observe((end - ctx.first_byte_at) / (output - 1))
        elif output > 0 and ctx.status < 400:
            self._tpot(model).observe(total / output)

    def _count_refusals(self, ctx: RequestContext, model: str) -> None:
        f = self.families
        if ctx.cache_hit:
            f.cache_hits.labels(model).inc()
        if ctx.attempts == 0 and ctx.status in (402, 429):
            f.refusals.labels("budget" if ctx.status == 402 else "rate_limit", model).inc()
        for action in ctx.guardrail_actions:
            f.guardrails.labels(action.guardrail, action.action).inc(action.count)

    @staticmethod
    def _key_values(ctx: RequestContext) -> tuple[str, str]:
        record = ctx.auth if isinstance(ctx.auth, KeyRecord) else None
        if record is None:
            return ("master" if ctx.auth == "master" else "none", "none")
        return (record.key_alias or record.key_name or "none", record.team_id or "none")

    # the router ------------------------------------------------------------------------------
    def attempt_ended(self, ctx: RequestContext, target: Target, end: AttemptEnd) -> None:
        dep = target.deployment
        self._attempts(dep.model_name, dep.id, status_class(end.status)).inc()
        if end.retried:
            self.families.retries.labels(dep.model_name).inc()

    def fallback(self, ctx: RequestContext, model: str, group: str) -> None:
        requested = model if model in self.names else OTHER
        self.families.fallbacks.labels(requested, group if group in self.names else OTHER).inc()

    def cooldown(self, deployment_id: str, seconds: float) -> None:
        self.families.cooldowns.labels(deployment_id).inc()

    # background: gauges and error counts that are not per request -----------------------------
    async def start(self) -> None:
        if self.multiproc_dir:
            procdir.forget_dead_workers(self.multiproc_dir)
        self._sampler = asyncio.get_running_loop().create_task(self._sample_forever())

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        if self.multiproc_dir:
            procdir.leaving(self.multiproc_dir)

    async def _sample_forever(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_SECONDS)

    def sample(self) -> None:
        f, writer = self.families, self.writer
        db = writer.failed_flushes if writer is not None else 0
        redis = self.redis.errors if self.redis is not None else 0
        seen_db, seen_redis = self._seen_errors
        if db > seen_db:
            f.db_errors.inc(db - seen_db)
        if redis > seen_redis:
            f.redis_errors.inc(redis - seen_redis)
        self._seen_errors = (db, redis)
        if writer is not None:
            depth, oldest = writer.backlog()
            f.queue_depth.set(depth)
            f.queue_lag.set(max(0.0, time.time() - oldest) if isinstance(oldest, float) else 0.0)

    # /metrics --------------------------------------------------------------------------------
    def render(self) -> tuple[bytes, str]:
        """The exposition text (every worker's values in multi-process mode) and its content type.
        Reads files in multi-process mode: call it off the event loop."""
        self.sample()
        registry = self.registry
        if registry is None:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiproc_dir)
        return generate_latest(registry), CONTENT_TYPE_LATEST
