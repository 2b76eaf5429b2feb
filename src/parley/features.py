"""Assemble a Gateway with every feature installed: the one place features are wired in."""

from __future__ import annotations

from parley.store import redis_link
from parley.bridges import anthropic_openai, openai_anthropic
from parley.filters.cache import hook as cache_hook
from parley.config import Config
from parley.gateway import Gateway
from parley.filters import rate_limit
from parley.filters import router_accounting
from parley.server import passthrough


def build_gateway(config: Config) -> Gateway:
    gw = Gateway(config)
    passthrough.install(gw)
    redis_link.install(gw)  # first: the router, rate limits and cache share it
    router_accounting.install(gw)
    rate_limit.install(gw)
    cache_hook.install(gw)
    openai_anthropic.install(gw)
    anthropic_openai.install(gw)
    if config.database_url:  # the storage stack (SQLAlchemy, Alembic) is only imported when used
        from parley.spend.service import install as install_keys_and_spend

        install_keys_and_spend(gw)
    return gw


def describe_database(config: Config) -> str:
    """Where spend and keys are stored, for the startup banner."""
    if not config.database_url:
        return "none (keys and spend tracking off; set general_settings.database_url or DATABASE_URL)"
    from parley.store.db import describe

    return describe(config.database_url)
