"""The response cache `litellm_settings` asks for: exact or semantic, in process or in Redis."""

from __future__ import annotations

import os

from sqlalchemy.ext.asyncio import AsyncEngine

from parley.config import CacheParams, Config, ConfigError
from parley.core.tasks import Tasks
from parley.filters.cache.filter import ResponseCache
from parley.filters.cache.semantic import SemanticCache
from parley.filters.cache.store import CacheStore, DatabaseStore, LocalStore, RedisStore
from parley.providers.local_embed import LocalEmbedder
from parley.spend.pricing import PriceTable
from parley.store.redis_link import DEFAULT_PREFIX, RedisLink, redis_url_from


def cache_from_config(
    config: Config,
    link: RedisLink | None,
    tasks: Tasks,
    embedder: LocalEmbedder,
    prices: PriceTable,
    engine: AsyncEngine | None = None,
) -> ResponseCache | None:
    """The cache (validated at load), or None when caching is off. `semantic` entries live in the
    database when there is one (shared by every instance), `redis-semantic` in Redis."""
    if not config.litellm.cache:
        return None
    params = config.litellm.cache_params
    if params.shared:
        store: CacheStore = RedisStore(_cache_link(config, link, tasks, params), params.namespace)
    elif params.semantic and engine is not None:
        store = DatabaseStore(engine, params.namespace)
    else:
        store = LocalStore(params.max_entries)
    if params.semantic:
        tasks.on_startup(embedder.warm)
        return SemanticCache(store, params, tasks, embedder, prices)
    return ResponseCache(store, params.ttl, tasks)


def _cache_link(config: Config, link: RedisLink | None, tasks: Tasks, params: CacheParams) -> RedisLink:
    named = {
        "redis_url": params.url,
        "redis_host": params.host,
        "redis_port": params.port,
        "redis_password": params.password,
    }
    url = redis_url_from(named, {})
    if url is None and link is not None:
        return link
    url = url or os.environ.get("REDIS_URL")
    if not url:
        raise ConfigError(
            "litellm_settings.cache_params: type redis (or redis-semantic) needs url (or host/port), "
            "router_settings.redis_url or REDIS_URL"
        )
    own = RedisLink(url, config.redis.key_prefix or DEFAULT_PREFIX)
    tasks.on_shutdown(own.close)
    return own
