"""Assemble a Gateway with every feature installed: the one place features are wired in."""

from __future__ import annotations

from parley.config import Config
from parley.gateway import Gateway
from parley.store.service import install as install_keys_and_spend


def build_gateway(config: Config) -> Gateway:
    gw = Gateway(config)
    install_keys_and_spend(gw)
    return gw


def describe_database(config: Config) -> str:
    """Where spend and keys are stored, for the startup banner."""
    if not config.database_url:
        return "none (keys and spend tracking off; set general_settings.database_url or DATABASE_URL)"
    from parley.store.db import describe

    return describe(config.database_url)
