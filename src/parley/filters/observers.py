"""The observers a config turns on: Prometheus metrics, OpenTelemetry traces, logging callbacks.

Each is imported and built only when configured, so what is off costs nothing on the hot path (no
filter in the chain, no router observer, not even the import).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from parley.config import Config
from parley.core.tasks import Tasks
from parley.pipeline.filter import Filter
from parley.router.events import RouterEvents
from parley.router.table import ModelTable
from parley.store.redis_link import RedisLink

if TYPE_CHECKING:
    from parley.filters.metrics.prometheus import PrometheusMetrics
    from parley.spend.service import StoreService


@dataclass
class Observers:
    filters: list[Filter] = field(default_factory=list)
    events: tuple[RouterEvents, ...] = ()
    metrics: PrometheusMetrics | None = None

    def attach(self, store: StoreService) -> None:
        """Spend logs are on: the metrics watch the writer's queue and use its prices."""
        if self.metrics is not None:
            self.metrics.watch_writer(store.writer)
            self.metrics.prices = store.prices


def build_observers(config: Config, table: ModelTable, tasks: Tasks, redis: RedisLink | None) -> Observers:
    settings = config.observability
    out = Observers()
    events: list[RouterEvents] = []
    if settings.prometheus:
        from parley.filters.metrics.prometheus import PrometheusMetrics
        from parley.spend.pricing import PriceTable

        names = {d.model_name for d in config.deployments} | set(config.model_group_alias)
        out.metrics = PrometheusMetrics(settings, names, PriceTable(), tasks, redis)
        out.filters.append(out.metrics)
        events.append(out.metrics)
    if settings.otel:
        from parley.filters.tracing import tracing

        traces = tracing(settings, tasks)
        out.filters.append(traces)
        events.append(traces)
    if settings.custom_callbacks:
        from parley.filters.callbacks import CallbackDispatch

        out.filters.append(CallbackDispatch(settings, tasks, config.path))
    out.events = tuple(events)
    return out
