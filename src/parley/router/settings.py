"""Per-deployment router settings from `params`: weight, rpm, tpm, num_retries, timeout,
stream_timeout, first_byte_timeout, connect_timeout. The global ones (`router_settings`) are
`parley.config.RouterSettings`, validated at load and re-exported here.
"""

from __future__ import annotations

from parley.config import STRATEGIES, RouterSettings
from parley.core.deployment import Deployment

__all__ = ["STRATEGIES", "RouterSettings", "dep_limit", "dep_timeouts", "dep_weight"]


def dep_weight(dep: Deployment) -> float:
    value = dep.params.get("weight", 1)
    return float(value) if isinstance(value, (int, float)) and value > 0 else 1.0


def dep_limit(dep: Deployment, name: str) -> int | None:
    value = dep.params.get(name)
    return (
        int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None
    )


def dep_timeouts(dep: Deployment, settings: RouterSettings, stream: bool) -> tuple[float, float]:
    """(first byte timeout, total timeout) for one attempt on `dep`."""
    total = float(dep.params["timeout"]) if "timeout" in dep.params else (settings.timeout or dep.timeout)
    first = dep.params.get("first_byte_timeout")
    if first is None and stream:
        first = dep.params.get("stream_timeout", settings.stream_timeout)
    return (float(first) if first else total), total
