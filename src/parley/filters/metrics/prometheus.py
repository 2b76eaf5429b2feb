"""Prometheus metrics: a METRICS-phase filter (whole requests, at `on_done`) that also listens to the
router (attempts, retries, fallbacks, cooldowns), and renders `/metrics`.

Labels are bounded: a model label is a configured model name (the deployment's group, or the
requested name when it is one of the configured names or aliases), anything else is `other`;
deployments are configured ids; key alias and team only with `metrics_key_labels`. Label children
are cached, so a request costs a few dictionary lookups and updates. With one worker the values are
lean in-memory children (`lean.py`); in multi-process mode prometheus_client's file-backed ones.
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
from parley.filters.metrics.families import CounterChild, Families, GaugeChild, client_maker, make_families
from parley.filters.metrics.lean import LeanCollector, lean_maker
from parley.filters.metrics.rows import Row
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
# the route label counted in flight, and its gauge
_COUNTED: StateKey[tuple[str, GaugeChild]] = StateKey("metrics.in_flight")


def route_label(route: str) -> str:
    if route.startswith("/anthropic") and route not in PASSTHROUGH_ROUTES:
        return "/anthropic/other"
    return route


# a status's class label by status (600 and above, or below 100: "error"), not formatted per request
STATUS_CLASSES = tuple(f"{s // 100}xx" if s >= 100 else "error" for s in range(600))


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
        self.registry: CollectorRegistry | None = None
        if self.multiproc_dir:
            self.families: Families = make_families(settings.metrics_key_labels, client_maker)
        else:
            self.families = make_families(settings.metrics_key_labels, lean_maker)
            self.registry = CollectorRegistry()
            self.registry.register(LeanCollector(self.families.all()))
        self.key_labels = settings.metrics_key_labels
        self.require_key = settings.metrics_require_key
        self.names = frozenset(model_names)
        self.prices = prices
        self.redis = redis
        self.writer: SpendWriter | None = None  # set by `watch_writer` when spend logs are on
        self._in_flight, self._attempts = self.families.in_flight, self.families.attempts
        # the children each request updates, found with one lookup: by request labels, by route
        # (requests in flight), by deployment id and status class (attempts)
        self._rows: dict[tuple[str, ...], Row] = {}
        self._gauges: dict[str, GaugeChild] = {}
        self._attempt_counts: dict[tuple[str, str], CounterChild] = {}
        self._seen_errors = (0, 0)  # (db, redis) errors already counted
        self._sampler: asyncio.Task[None] | None = None
        tasks.on_startup(self.start)
        tasks.on_shutdown(self.stop)

    def watch_writer(self, writer: SpendWriter) -> None:
        self.writer = writer

    # the request -----------------------------------------------------------------------------
    def observe_request(self, ctx: RequestContext, body: dict[str, Any] | None) -> None:
        route = route_label(ctx.route)
        gauge = self._gauges.get(route)
        if gauge is None:
            gauge = self._gauges[route] = self._in_flight(route)
        gauge.inc()
        ctx.state.put(_COUNTED, (route, gauge))
        return None

    def on_done(self, ctx: RequestContext) -> None:
        counted = ctx.state.pop(_COUNTED)
        if counted is None:
            route = route_label(ctx.route)
        else:
            route, gauge = counted
            gauge.dec()
        dep = ctx.deployment
        if dep is None:
            model, dep_id = (ctx.model if ctx.model in self.names else OTHER), "none"
        else:
            model, dep_id = dep.model_name, dep.id
        status = ctx.status
        labels: tuple[str, ...] = (
            route,
            model,
            dep_id,
            STATUS_CLASSES[status] if 0 <= status < 600 else "error",
        )
        if self.key_labels:
            labels += self._key_values(ctx)
        row = self._rows.get(labels)
        if row is None:
            row = self._rows[labels] = Row(self.families, labels)
        row.requests.inc()
        u = ctx.usage  # the usage and the times inline: two calls less per request
        if u.input_tokens:
            row.input.inc(u.input_tokens)
        if u.output_tokens:
            row.output.inc(u.output_tokens)
        if u.cache_read_input_tokens:
            row.cache_read.inc(u.cache_read_input_tokens)
        if u.cache_creation_input_tokens:
            row.cache_write.inc(u.cache_creation_input_tokens)
        cost = ctx.cost
        if cost is None and dep is not None and (u.input_tokens or u.output_tokens):
            cost = self.prices.for_deployment(dep, ctx.upstream_model or ctx.model).cost(u)
        if cost:
            row.spend.inc(cost)
        end = ctx.ended_at if ctx.ended_at is not None else time.perf_counter()
        total = end - ctx.started
        row.latency.observe(total)
        if status < 400:
            output = u.output_tokens
            if ctx.stream and ctx.first_byte_at is not None:
                row.ttft.observe(ctx.first_byte_at - ctx.started)
                if output > 1:
                    row.tpot.observe((end - ctx.first_byte_at) / (output - 1))
            elif output > 0:
                row.tpot.observe(total / output)
        if ctx.cache_hit or not ctx.attempts or ctx.guardrail_actions:
            self._count_refusals(ctx, model)

    def _count_refusals(self, ctx: RequestContext, model: str) -> None:
        f = self.families
        if ctx.cache_hit:
            f.cache_hits(model).inc()
        if ctx.attempts == 0 and ctx.status in (402, 429):
            f.refusals("budget" if ctx.status == 402 else "rate_limit", model).inc()
        for action in ctx.guardrail_actions:
            f.guardrails(action.guardrail, action.action).inc(action.count)

    @staticmethod
    def _key_values(ctx: RequestContext) -> tuple[str, str]:
        record = ctx.auth if isinstance(ctx.auth, KeyRecord) else None
        if record is None:
            return ("master" if ctx.auth == "master" else "none", "none")
        return (record.key_alias or record.key_name or "none", record.team_id or "none")

    # the router ------------------------------------------------------------------------------
    def attempt_ended(self, ctx: RequestContext, target: Target, end: AttemptEnd) -> None:
        dep, status = target.deployment, end.status
        key = (dep.id, STATUS_CLASSES[status] if 0 <= status < 600 else "error")
        counter = self._attempt_counts.get(key)
        if counter is None:
            counter = self._attempt_counts[key] = self._attempts(dep.model_name, *key)
        counter.inc()
        if end.retried:
            self.families.retries(dep.model_name).inc()

    def fallback(self, ctx: RequestContext, model: str, group: str) -> None:
        requested = model if model in self.names else OTHER
        self.families.fallbacks(requested, group if group in self.names else OTHER).inc()

    def cooldown(self, deployment_id: str, seconds: float) -> None:
        self.families.cooldowns(deployment_id).inc()

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
            f.db_errors().inc(db - seen_db)
        if redis > seen_redis:
            f.redis_errors().inc(redis - seen_redis)
        self._seen_errors = (db, redis)
        if writer is not None:
            depth, oldest = writer.backlog()
            f.queue_depth().set(depth)
            f.queue_lag().set(max(0.0, time.time() - oldest) if isinstance(oldest, float) else 0.0)

    # /metrics --------------------------------------------------------------------------------
    def render(self) -> tuple[bytes, str]:
        """The exposition text (every worker's values in multi-process mode) and its content type.
        Only reads (call `sample` first, on the event loop); reads files in multi-process mode: call
        it off the event loop."""
        registry = self.registry
        if registry is None:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiproc_dir)
        return generate_latest(registry), CONTENT_TYPE_LATEST
