"""Router behaviour from `router_settings` (LiteLLM's names) and per-deployment `params`.

Global: routing_strategy, num_retries, retry_after, allowed_fails, allowed_fails_window,
cooldown_time, timeout, stream_timeout, fallbacks, context_window_fallbacks,
content_policy_fallbacks, max_retry_after, cooldown_sync_interval, routing_strategy_args.
Per deployment (params): weight, rpm, tpm, num_retries, timeout, stream_timeout,
first_byte_timeout, connect_timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from parley.config import ConfigError
from parley.core.deployment import Deployment

STRATEGIES = {
    "simple-shuffle": "simple-shuffle",
    "least-busy": "least-busy",
    "latency-based": "latency-based",
    "latency-based-routing": "latency-based",
    "usage-based-routing": "usage-based",
    "usage-based-routing-v2": "usage-based",
}


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
    def from_config(cls, settings: Mapping[str, Any], where: str = "router_settings") -> "RouterSettings":
        name = settings.get("routing_strategy", "simple-shuffle")
        if name not in STRATEGIES:
            raise ConfigError(f"{where}.routing_strategy: unknown {name!r}; known: "
                              f"{', '.join(sorted(STRATEGIES))}")
        args = settings.get("routing_strategy_args") or {}
        return cls(
            strategy=STRATEGIES[name],
            num_retries=_int(settings, "num_retries", 2, where),
            retry_after=_num(settings, "retry_after", 0.0, where),
            max_retry_after=_num(settings, "max_retry_after", 60.0, where),
            allowed_fails=max(1, _int(settings, "allowed_fails", 3, where)),
            allowed_fails_window=_num(settings, "allowed_fails_window", 60.0, where),
            cooldown_time=_num(settings, "cooldown_time", 5.0, where),
            timeout=_opt_num(settings, "timeout", where),
            stream_timeout=_opt_num(settings, "stream_timeout", where),
            fallbacks=_fallbacks(settings, "fallbacks", where),
            context_window_fallbacks=_fallbacks(settings, "context_window_fallbacks", where),
            content_policy_fallbacks=_fallbacks(settings, "content_policy_fallbacks", where),
            latency_buffer=float(args.get("lowest_latency_buffer", 0.0)) if isinstance(args, dict) else 0.0,
            cooldown_sync_interval=_num(settings, "cooldown_sync_interval", 1.0, where),
            backoff_initial=_num(settings, "retry_backoff_initial", 0.25, where),
            backoff_max=_num(settings, "retry_backoff_max", 5.0, where),
        )

    def fallbacks_for(self, kind: str, model: str) -> list[str]:
        table = {"context_window": self.context_window_fallbacks,
                 "content_policy": self.content_policy_fallbacks}.get(kind, self.fallbacks)
        return table.get(model) or table.get("*") or []


def dep_weight(dep: Deployment) -> float:
    value = dep.params.get("weight", 1)
    return float(value) if isinstance(value, (int, float)) and value > 0 else 1.0


def dep_limit(dep: Deployment, name: str) -> int | None:
    value = dep.params.get(name)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def dep_timeouts(dep: Deployment, settings: RouterSettings, stream: bool) -> tuple[float, float]:
    """(first byte timeout, total timeout) for one attempt on `dep`."""
    total = float(dep.params["timeout"]) if "timeout" in dep.params else (settings.timeout or dep.timeout)
    first = dep.params.get("first_byte_timeout")
    if first is None and stream:
        first = dep.params.get("stream_timeout", settings.stream_timeout)
    return (float(first) if first else total), total


def _num(settings: Mapping[str, Any], name: str, default: float, where: str) -> float:
    value = settings.get(name, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{where}.{name}: must be a non-negative number, got {value!r}")
    return float(value)


def _opt_num(settings: Mapping[str, Any], name: str, where: str) -> float | None:
    if settings.get(name) is None:
        return None
    value = _num(settings, name, 0.0, where)
    if value <= 0:
        raise ConfigError(f"{where}.{name}: must be positive")
    return value


def _int(settings: Mapping[str, Any], name: str, default: int, where: str) -> int:
    value = settings.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{where}.{name}: must be a non-negative integer, got {value!r}")
    return value


def _fallbacks(settings: Mapping[str, Any], name: str, where: str) -> dict[str, list[str]]:
    """LiteLLM's shape: a list of one-key mappings, `[{model: [fallback, ...]}]` (a mapping works too)."""
    value = settings.get(name) or []
    items = value.items() if isinstance(value, dict) else None
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
