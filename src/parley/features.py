"""Assemble a Gateway with every feature installed: the one place features are wired in."""

from __future__ import annotations

from parley.config import Config
from parley.bridges import anthropic_openai
from parley.gateway import Gateway


def build_gateway(config: Config) -> Gateway:
    gw = Gateway(config)
    anthropic_openai.install(gw)
    return gw


def describe_database(config: Config) -> str:
    """Where spend and keys are stored, for the startup banner."""
    return config.database_url or "none (spend tracking not configured)"
