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
from parley.filters.admission import admission
from parley.filters.cache.factory import cache_from_config
from parley.filters.observers import build_observers
from parley.filters.rate_limit import RateLimitPolicy
from parley.filters.router_accounting import RouterAccounting
from parley.pipeline.chain import FilterChain
from parley.pipeline.filter import Authenticator, Filter
from parley.pipeline.lifecycle import Pipeline
from parley.pipeline.model_health import ModelHealth
from parley.providers.anthropic import AnthropicProvider
from parley.providers.azure import AzureOpenAIProvider
from parley.providers.base import Provider
from parley.providers.bedrock import BedrockProvider
from parley.providers.gemini import GeminiProvider
from parley.providers.local_embed import LocalEmbedder, LocalEmbedProvider
from parley.providers.mock import MockProvider
from parley.providers.openai import OpenAIProvider
from parley.providers.vertex import VertexProvider
from parley.retrieval.service import VectorStores
from parley.router.health import Health
from parley.router.run import Router
from parley.router.settings import RouterSettings
from parley.router.table import ModelTable
from parley.spend.pricing import PriceTable
from parley.store.redis_link import RedisLink, link_from_config
from parley.transport.http import HttpClient

if TYPE_CHECKING:  # the storage stack (SQLAlchemy, Alembic) is imported only when configured
    from parley.batches.runner import BatchRunner
    from parley.filters.metrics.prometheus import PrometheusMetrics
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
    embedder: LocalEmbedder  # the built-in embedding model (loaded on first use)
    vector_stores: VectorStores | None  # retrieval; None without a database
    metrics: PrometheusMetrics | None  # GET /metrics; None unless `callbacks: [prometheus]`
    model_health: ModelHealth  # GET /health
    batches: BatchRunner | None = None  # Message Batches (`/v1/messages/batches`); needs a database

    async def start(self) -> None:
        await self.tasks.start()

    async def stop(self) -> None:
        await self.tasks.stop()
        await self.http.close()


def build_gateway(config: Config, extra_filters: Sequence[Filter] = (), batches: bool = True) -> Gateway:
    """Every part of a gateway for `config`; `extra_filters` join the chain in their phases;
    `batches`: run Message Batches (the server does; the in-process SDK does not)."""
    tasks = Tasks()
    http = HttpClient(max_response_bytes=config.general.max_response_bytes)
    redis = link_from_config(config.redis, os.environ)
    if redis is not None:
        tasks.on_shutdown(redis.close)
    table = ModelTable(config.deployments, config.model_group_alias)
    settings = config.router
    health = Health(settings, redis)
    observers = build_observers(config, table, tasks, redis)
    router = Router(table, settings, health, observers.events)
    _warn_fallbacks(settings, table)
    openai = OpenAIProvider(http)
    openai.check(config.deployments)
    azure = AzureOpenAIProvider(http)
    azure.check(config.deployments)
    vertex = VertexProvider(http)
    vertex.check(config.deployments, tasks)
    bedrock = BedrockProvider(http)
    bedrock.check(config.deployments)
    embedder = LocalEmbedder()
    local = LocalEmbedProvider(embedder)
    local.check(config.deployments)
    providers: dict[str, Provider] = {
        "anthropic": AnthropicProvider(http),
        "mock": MockProvider(),
        "local": local,
        "openai": openai,
        "azure": azure,
        "vertex": vertex,
        "gemini": GeminiProvider(http),
        "bedrock": bedrock,
    }
    filters: list[Filter] = [
        AccessLog(),
        RouterAccounting(health),
        RateLimitPolicy(config.default_limits, redis),
    ]
    filters.extend(extra_filters)
    if config.guardrails:
        from parley.filters.guardrails.filter import Guardrails, PiiRestore
        from parley.filters.guardrails.llm_check import LlmCheck

        llm_check = LlmCheck(router, providers)
        llm_check.check_config(config.guardrails)
        filters.extend([Guardrails(config.guardrails, llm_check), PiiRestore()])
    filters.extend(observers.filters)
    auth = Authenticator(config.general.master_key)
    store = None
    vector_stores = None
    if config.general.database_url:
        from parley.filters.retrieval import RetrievalFilter
        from parley.spend.service import StoreService

        store = StoreService(config, redis, tasks)
        tasks.on_startup(store.start)  # first: the migrations run before any other startup hook
        auth, more = _keys_and_spend(config, store, table, tasks)
        filters.extend(more)
        vector_stores = VectorStores(store.engine, embedder, tasks)
        filters.append(RetrievalFilter(vector_stores))
        observers.attach(store)
        tasks.on_shutdown(store.stop)
    engine = store.engine if store is not None else None
    cache = cache_from_config(config, redis, tasks, embedder, PriceTable(), engine)
    if cache is not None:
        filters.append(cache)
    one_call = admission(redis, filters, health, table)
    if one_call is not None:
        filters.append(one_call)
    pipeline = Pipeline(
        auth,
        FilterChain(filters),
        router,
        providers,
        config.general.max_request_bytes,
        config.general.stream_ping_interval,
        config.general.max_stream_seconds,
    )
    runner = _batches(pipeline, store, tasks, http) if store is not None and batches else None
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
        embedder,
        vector_stores,
        observers.metrics,
        ModelHealth(
            config.deployments,
            providers,
            config.observability.health_check_interval,
            config.observability.health_check_timeout,
        ),
        runner,
    )


def check_providers(config: Config) -> None:
    """The providers' own config checks (switches, credentials files), for `parley serve` to report
    as one line before it starts workers; build_gateway runs them again in each worker."""
    http = HttpClient()  # never opened
    OpenAIProvider(http).check(config.deployments)
    AzureOpenAIProvider(http).check(config.deployments)
    VertexProvider(http).check(config.deployments, Tasks())


def _batches(pipeline: Pipeline, store: StoreService, tasks: Tasks, http: HttpClient) -> BatchRunner:
    """The Message Batches runner (started after the database is migrated, stopped before it closes)."""
    from parley.batches.runner import build_runner

    runner = build_runner(pipeline, store, http)
    tasks.on_startup(runner.start)
    tasks.on_shutdown(runner.stop)
    return runner


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

    where = describe(config.general.database_url)
    if config.embedded_database:
        return f"{where} (embedded: master_key without database_url; database_url: none turns keys off)"
    return where
