"""The gateway object, built in one place: every collaborator of one running parley, typed.

`build_gateway(config)` is where features are wired in: the providers, the router, the filter
chain (each filter declares its phase; the chain orders them), the authenticator, and the
storage stack when a database is configured. Nothing sets attributes on a Gateway afterwards.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from parley.config import Config, PassthroughSettings
from parley.core.tasks import Tasks
from parley.filters.access_log import AccessLog
from parley.filters.cache.filter import cache_from_config
from parley.filters.rate_limit import RateLimitPolicy
from parley.filters.router_accounting import RouterAccounting
from parley.pipeline.chain import FilterChain
from parley.pipeline.filter import Authenticator, Filter
from parley.pipeline.lifecycle import Pipeline
from parley.providers.anthropic import AnthropicProvider
from parley.providers.base import Provider
from parley.providers.mock import MockProvider
from parley.providers.openai import OpenAIProvider
from parley.router.health import Health
from parley.router.run import Router
from parley.router.settings import RouterSettings
from parley.router.table import ModelTable
from parley.spend.pricing import PriceTable
from parley.store.redis_link import RedisLink, link_from_config
from parley.transport.http import HttpClient

if TYPE_CHECKING:  # the storage stack (SQLAlchemy, Alembic) is imported only when configured
    from parley.spend.service import StoreService

log = logging.getLogger("parley")


@dataclass(frozen=True)
class Gateway:
    config: Config
    tasks: Tasks
    http: HttpClient
    redis: RedisLink | None
    table: ModelTable
    router: Router
    pipeline: Pipeline
    passthrough: PassthroughSettings
    store: StoreService | None  # keys, budgets and spend; None without a database
    prices: PriceTable  # list prices (the SDK's `cost`)

    async def start(self) -> None:
        await self.tasks.start()

    async def stop(self) -> None:
        await self.tasks.stop()
        await self.http.close()


def build_gateway(config: Config, extra_filters: Sequence[Filter] = ()) -> Gateway:
    """Every part of a gateway for `config`; `extra_filters` join the chain in their phases."""
    tasks = Tasks()
    http = HttpClient()
    redis = link_from_config(config.redis, os.environ)
    if redis is not None:
        tasks.on_shutdown(redis.close)
    table = ModelTable(config.deployments, config.model_group_alias)
    settings = config.router
    health = Health(settings, redis)
    router = Router(table, settings, health)
    _warn_fallbacks(settings, table)
    openai = OpenAIProvider(http)
    openai.check(config.deployments)
    providers: dict[str, Provider] = {
        "anthropic": AnthropicProvider(http),
        "mock": MockProvider(),
        "openai": openai,
    }
    filters: list[Filter] = [
        AccessLog(),
        RouterAccounting(health),
        RateLimitPolicy(config.default_limits, redis, tasks),
    ]
    filters.extend(extra_filters)
    cache = cache_from_config(config, redis, tasks)
    if cache is not None:
        filters.append(cache)
    auth = Authenticator(config.general.master_key)
    store = None
    if config.general.database_url:
        from parley.spend.service import StoreService

        store = StoreService(config, redis, tasks)
        tasks.on_startup(store.start)  # first: the migrations run before any other startup hook
        auth, more = _keys_and_spend(config, store, table, tasks)
        filters.extend(more)
        tasks.on_shutdown(store.stop)
    pipeline = Pipeline(
        auth,
        FilterChain(filters),
        router,
        providers,
        config.general.max_request_bytes,
        config.general.stream_ping_interval,
        config.general.max_stream_seconds,
    )
    return Gateway(
        config,
        tasks,
        http,
        redis,
        table,
        router,
        pipeline,
        config.passthrough,
        store,
        store.prices if store is not None else PriceTable(),
    )


def _keys_and_spend(
    config: Config, store: StoreService, table: ModelTable, tasks: Tasks
) -> tuple[Authenticator, list[Filter]]:
    """Virtual keys, budgets and spend logs (the storage stack is imported only when used)."""
    from parley.filters.budget import BudgetPolicy
    from parley.filters.spend_log import SpendTracker
    from parley.filters.threads import ThreadHolder
    from parley.filters.virtual_keys import VirtualKeyAuth, VirtualKeyPolicy
    from parley.store.threads import ThreadStore

    auth = VirtualKeyAuth(config.general.master_key, store)
    filters: list[Filter] = [
        VirtualKeyPolicy(store),
        BudgetPolicy(config.general, store, table, tasks),
        SpendTracker(store),
    ]
    if config.general.message_threads:
        threads = ThreadStore(store.engine)
        tasks.on_startup(threads.prune)  # after the migrations (store.start runs first)
        filters.append(ThreadHolder(threads, tasks))
    return auth, filters


def _warn_fallbacks(settings: RouterSettings, table: ModelTable) -> None:
    for fallbacks in (
        settings.fallbacks,
        settings.context_window_fallbacks,
        settings.content_policy_fallbacks,
    ):
        for model, targets in fallbacks.items():
            for name in targets:
                if not table.resolve(name):
                    log.warning("router_settings: fallback %r of %r is not a served model", name, model)


def describe_database(config: Config) -> str:
    """Where spend and keys are stored, for the startup banner."""
    if not config.general.database_url:
        return "none (keys and spend tracking off; set general_settings.database_url or DATABASE_URL)"
    from parley.store.db import describe

    return describe(config.general.database_url)
