"""Typed, validated settings of `general_settings`, `litellm_settings` and `anthropic_passthrough`.

Defaults are those parley has always used; a bad value fails at load with
`file: section.field: must be ..., got value`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from parley.config.fields import Fields

DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
ANTHROPIC_BASE = "https://api.anthropic.com"


@dataclass(frozen=True)
class GeneralSettings:
    master_key: str | None = None  # or PARLEY_MASTER_KEY
    database_url: str | None = None  # or DATABASE_URL
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES  # from max_request_size_mb
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES  # an upstream reply read whole; max_response_size_mb
    stream_ping_interval: float = 15.0  # seconds of upstream silence before a `ping` event
    max_stream_seconds: float = 3600.0  # a stream still open after this ends with an error event
    key_cache_ttl: float = 60.0
    spend_flush_interval: float = 0.5
    spend_batch_size: int = 500
    spend_journal: bool = True  # rows on local disk before the database has them (see keys-and-spend.md)
    spend_journal_dir: str | None = None  # default: next to the SQLite file, or ~/.local/state/parley
    spend_journal_fsync_ms: float = 50.0
    budget_refresh_seconds: float = 5.0
    budget_min_reply_tokens: int = 16
    budget_input_margin: float = 1.2
    database_pool_size: int = 5
    database_max_overflow: int = 5
    database_pool_timeout: float = 10.0
    message_threads: bool = True  # hold `thread` conversations in the database for non-Anthropic backends
    strict_config: bool = False  # any key parley does not act on is an error

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], where: str, env: Mapping[str, str]) -> GeneralSettings:
        f = Fields(settings, where)
        size_mb = f.opt_number("max_request_size_mb")
        reply_mb = f.opt_number("max_response_size_mb")
        return cls(
            master_key=f.text("master_key") or env.get("PARLEY_MASTER_KEY") or None,
            database_url=f.text("database_url") or env.get("DATABASE_URL") or None,
            max_request_bytes=int(size_mb * 1024 * 1024) if size_mb else DEFAULT_MAX_REQUEST_BYTES,
            max_response_bytes=int(reply_mb * 1024 * 1024) if reply_mb else DEFAULT_MAX_RESPONSE_BYTES,
            stream_ping_interval=f.number("stream_ping_interval", 15.0, positive=True),
            max_stream_seconds=f.number("max_stream_seconds", 3600.0, positive=True),
            key_cache_ttl=f.number("key_cache_ttl", 60.0),
            spend_flush_interval=f.number("spend_flush_interval", 0.5, positive=True),
            spend_batch_size=f.integer("spend_batch_size", 500, positive=True),
            spend_journal=f.flag("spend_journal", True),
            spend_journal_dir=f.text("spend_journal_dir"),
            spend_journal_fsync_ms=f.number("spend_journal_fsync_ms", 50.0, positive=True),
            budget_refresh_seconds=f.number("budget_refresh_seconds", 5.0, positive=True),
            budget_min_reply_tokens=f.integer("budget_min_reply_tokens", 16),
            budget_input_margin=f.number("budget_input_margin", 1.2),
            database_pool_size=f.integer("database_pool_size", 5, positive=True),
            database_max_overflow=f.integer("database_max_overflow", 5),
            database_pool_timeout=f.number("database_pool_timeout", 10.0, positive=True),
            message_threads=f.flag("message_threads", True),
            strict_config=f.flag("strict_config", False),
        )


@dataclass(frozen=True)
class CacheParams:
    """`litellm_settings.cache_params`; a redis cache without url/host uses the gateway's Redis."""

    type: str = "local"  # local | redis | semantic | redis-semantic
    ttl: float = 600.0
    max_entries: int = 10_000
    url: str | None = None
    host: str | None = None
    port: int | None = None
    password: str | None = None
    namespace: str | None = None
    similarity_threshold: float = 0.8  # semantic: cosine of the last user texts to count as a hit
    semantic_scope: str = "key"  # semantic: entries shared by one key, one team, or everyone
    semantic_tool_results: bool = False  # semantic: also for requests that carry tool results
    semantic_default: bool = False  # semantic: for every request, not only opted-in keys and models

    @property
    def semantic(self) -> bool:
        return self.type in ("semantic", "redis-semantic")

    @property
    def shared(self) -> bool:
        return self.type in ("redis", "redis-semantic")

    @classmethod
    def from_config(cls, f: Fields) -> CacheParams:
        port = f.values.get("port")
        threshold = f.number("similarity_threshold", 0.8)
        if threshold > 1:
            raise f.fail("similarity_threshold", "a number from 0 to 1", threshold)
        model = f.text("redis_semantic_cache_embedding_model")
        if model is not None and model.removeprefix("local/") not in ("parley-embed",):
            raise f.fail(
                "redis_semantic_cache_embedding_model", "local/parley-embed (the built-in model)", model
            )
        return cls(
            similarity_threshold=threshold,
            semantic_scope=f.choice("semantic_scope", "key", ("key", "team", "global")),
            semantic_tool_results=f.flag("semantic_tool_results", False),
            semantic_default=f.flag("semantic_default", False),
            type=f.choice("type", "local", ("local", "redis", "semantic", "redis-semantic")),
            ttl=f.number("ttl", 600.0),
            max_entries=f.integer("max_entries", 10_000, positive=True),
            url=f.text("url"),
            host=f.text("host"),
            port=None if port is None else f.integer("port", 6379, positive=True),
            password=f.text("password"),
            namespace=f.text("namespace"),
        )


@dataclass(frozen=True)
class LitellmSettings:
    cache: bool = False  # the exact-match response cache
    cache_params: CacheParams = field(default_factory=CacheParams)
    json_logs: bool = False  # one JSON object per log line
    set_verbose: bool = False  # debug logging (as --detailed_debug); secrets are still masked
    drop_params: bool = True  # parley always drops what a backend cannot take (x-parley-dropped)

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], where: str) -> LitellmSettings:
        f = Fields(settings, where)
        return cls(
            cache=f.flag("cache", False),
            cache_params=CacheParams.from_config(f.mapping("cache_params")),
            json_logs=f.flag("json_logs", False),
            set_verbose=f.flag("set_verbose", False),
            drop_params=f.flag("drop_params", True),
        )


@dataclass(frozen=True)
class PassthroughSettings:
    """`anthropic_passthrough`: the raw `/anthropic/*` route."""

    api_base: str = ANTHROPIC_BASE
    api_key: str | None = None  # default: ANTHROPIC_API_KEY
    forward_client_key: bool = False
    timeout: float = 600.0

    @classmethod
    def from_config(
        cls, settings: Mapping[str, Any], where: str, env: Mapping[str, str]
    ) -> PassthroughSettings:
        f = Fields(settings, where)
        key = f.text("api_key") if "api_key" in settings else env.get("ANTHROPIC_API_KEY") or None
        return cls(
            api_base=f.url("api_base", ANTHROPIC_BASE) or ANTHROPIC_BASE,
            api_key=key,
            forward_client_key=f.flag("forward_client_key", False),
            timeout=f.number("timeout", 600.0, positive=True),
        )
