"""`router_settings`: the router's behaviour (LiteLLM's names), Redis, default limits, aliases.

Router: routing_strategy, routing_strategy_args.lowest_latency_buffer, num_retries, retry_after,
max_retry_after, allowed_fails, allowed_fails_window, cooldown_time, timeout, stream_timeout,
fallbacks, context_window_fallbacks, content_policy_fallbacks, cooldown_sync_interval,
retry_backoff_initial, retry_backoff_max. Redis: redis_url, or redis_host + redis_port +
redis_password; redis_key_prefix, redis_timeout, redis_max_connections, redis_lease_ms,
redis_lease_max_requests. Also default_limits and
model_group_alias.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from parley.config.fields import ConfigError, Fields

STRATEGIES = {
    "simple-shuffle": "simple-shuffle",
    "least-busy": "least-busy",
    "latency-based": "latency-based",
    "latency-based-routing": "latency-based",
    "usage-based-routing": "usage-based",
    "usage-based-routing-v2": "usage-based",
}
LIMIT_NAMES = ("rpm_limit", "tpm_limit", "max_parallel_requests", "model_rpm_limit", "model_tpm_limit")


@dataclass(frozen=True)
class RouterSettings:
    strategy: str = "simple-shuffle"
    num_retries: int = 2
    retry_after: float = 0.0  # minimum wait before any retry (LiteLLM `retry_after`)
    max_retry_after: float = 60.0  # an upstream asking for a longer wait is not retried
    allowed_fails: int = 3
    allowed_fails_window: float = 60.0
    cooldown_time: float = 5.0
    timeout: float | None = None
    stream_timeout: float | None = None
    fallbacks: dict[str, list[str]] = field(default_factory=dict)
    context_window_fallbacks: dict[str, list[str]] = field(default_factory=dict)
    content_policy_fallbacks: dict[str, list[str]] = field(default_factory=dict)
    latency_buffer: float = 0.0
    cooldown_sync_interval: float = 1.0
    backoff_initial: float = 0.25
    backoff_max: float = 5.0

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], where: str = "router_settings") -> RouterSettings:
        name = settings.get("routing_strategy", "simple-shuffle")
        if name not in STRATEGIES:
            raise ConfigError(
                f"{where}.routing_strategy: unknown {name!r}; known: {', '.join(sorted(STRATEGIES))}"
            )
        f = Fields(settings, where)
        return cls(
            strategy=STRATEGIES[name],
            num_retries=f.integer("num_retries", 2),
            retry_after=f.number("retry_after", 0.0),
            max_retry_after=f.number("max_retry_after", 60.0),
            allowed_fails=max(1, f.integer("allowed_fails", 3)),
            allowed_fails_window=f.number("allowed_fails_window", 60.0),
            cooldown_time=f.number("cooldown_time", 5.0),
            timeout=f.opt_number("timeout"),
            stream_timeout=f.opt_number("stream_timeout"),
            fallbacks=_fallbacks(settings, "fallbacks", where),
            context_window_fallbacks=_fallbacks(settings, "context_window_fallbacks", where),
            content_policy_fallbacks=_fallbacks(settings, "content_policy_fallbacks", where),
            latency_buffer=_latency_buffer(f),
            cooldown_sync_interval=f.number("cooldown_sync_interval", 1.0),
            backoff_initial=f.number("retry_backoff_initial", 0.25),
            backoff_max=f.number("retry_backoff_max", 5.0),
        )

    def fallbacks_for(self, kind: str, model: str) -> list[str]:
        table = {
            "context_window": self.context_window_fallbacks,
            "content_policy": self.content_policy_fallbacks,
        }.get(kind, self.fallbacks)
        return table.get(model) or table.get("*") or []


@dataclass(frozen=True)
class RedisSettings:
    """Where the shared Redis is; `url` is None when router_settings names none (REDIS_URL may)."""

    url: str | None = None
    key_prefix: str | None = None  # None: PARLEY_REDIS_PREFIX or "parley"
    timeout: float = 0.5
    max_connections: int = 512  # the pool: one connection per concurrent Redis call, waits <= timeout
    lease_ms: int = 1000  # quota leases live this long (0: every request asks Redis)
    lease_max_requests: int = 256  # the most requests one lease is sized for

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], where: str = "router_settings") -> RedisSettings:
        f = Fields(settings, where)
        url = f.text("redis_url")
        host = f.text("redis_host")
        port = (
            f.integer("redis_port", 6379, positive=True) if settings.get("redis_port") is not None else 6379
        )
        password = f.text("redis_password")
        if url is None and host is not None:
            url = f"redis://{f':{password}@' if password else ''}{host}:{port}"
        return cls(
            url=url,
            key_prefix=f.text("redis_key_prefix"),
            timeout=f.number("redis_timeout", 0.5, positive=True),
            max_connections=f.integer("redis_max_connections", 512, positive=True),
            lease_ms=f.integer("redis_lease_ms", 1000),
            lease_max_requests=f.integer("redis_lease_max_requests", 256, positive=True),
        )


@dataclass(frozen=True)
class DefaultLimits:
    """`router_settings.default_limits`: limits for keys without their own (None: no limit)."""

    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel_requests: int | None = None
    model_rpm_limit: dict[str, int] = field(default_factory=dict)
    model_tpm_limit: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], where: str) -> DefaultLimits:
        f = Fields(settings, where).mapping("default_limits")
        for name in f.values:
            if name not in LIMIT_NAMES:
                raise ConfigError(f"{f.where}.{name}: unknown; known: {', '.join(LIMIT_NAMES)}")
        return cls(
            rpm_limit=_opt_int(f, "rpm_limit"),
            tpm_limit=_opt_int(f, "tpm_limit"),
            max_parallel_requests=_opt_int(f, "max_parallel_requests"),
            model_rpm_limit=_per_model(f, "model_rpm_limit"),
            model_tpm_limit=_per_model(f, "model_tpm_limit"),
        )


def model_aliases(settings: Mapping[str, Any], where: str) -> dict[str, str]:
    """`model_group_alias`: extra names for model groups."""
    aliases = settings.get("model_group_alias") or {}
    if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        raise ConfigError(f"{where}.model_group_alias: must map names to model names")
    return {str(k): v for k, v in aliases.items()}


def _opt_int(f: Fields, name: str) -> int | None:
    return None if f.values.get(name) is None else f.integer(name, 0, positive=True)


def _per_model(f: Fields, name: str) -> dict[str, int]:
    per_model = f.mapping(name)
    return {str(model): per_model.integer(model, 0, positive=True) for model in per_model.values}


def _latency_buffer(f: Fields) -> float:
    args = f.values.get("routing_strategy_args")
    if not isinstance(args, dict):
        return 0.0
    return Fields(args, f"{f.where}.routing_strategy_args").number("lowest_latency_buffer", 0.0)


def _fallbacks(settings: Mapping[str, Any], name: str, where: str) -> dict[str, list[str]]:
    """LiteLLM's shape: a list of one-key mappings, `[{model: [fallback, ...]}]` (a mapping works too)."""
    value = settings.get(name) or []
    items = list(value.items()) if isinstance(value, dict) else None
    if items is None:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ConfigError(f"{where}.{name}: must be a list like [{{model: [fallback, ...]}}]")
        items = [kv for entry in value for kv in entry.items()]
    out: dict[str, list[str]] = {}
    for model, targets in items:
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise ConfigError(f"{where}.{name}.{model}: must be a list of model names")
        out.setdefault(str(model), []).extend(targets)
    return out
