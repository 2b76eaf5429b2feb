"""Choosing one target among the healthy ones: the routing strategies and session affinity.

Session affinity uses weighted rendezvous hashing: every worker and instance maps a session to the
same deployment without shared state, and when that deployment cools down the session moves to
its next-best one (and comes back when it recovers), so upstream prompt caches keep hitting.
"""

from __future__ import annotations

import hashlib
import math
import random

from parley.core.deployment import Target
from parley.router.health import Health
from parley.router.settings import dep_weight

SESSION_HEADER = "x-claude-code-session-id"


def choose(
    targets: list[Target], strategy: str, health: Health, session: str | None, latency_buffer: float = 0.0
) -> Target:
    if len(targets) == 1:
        return targets[0]
    if session:
        return max(targets, key=lambda t: _rendezvous(session, t))
    if strategy == "least-busy":
        low = min(health.of(t.deployment.id).inflight for t in targets)
        return random.choice([t for t in targets if health.of(t.deployment.id).inflight == low])
    if strategy == "latency-based":
        return _lowest_latency(targets, health, latency_buffer)
    if strategy == "usage-based":
        low = min(health.usage(t.deployment.id)[1] for t in targets)
        return random.choice([t for t in targets if health.usage(t.deployment.id)[1] == low])
    weights = [dep_weight(t.deployment) for t in targets]
    return random.choices(targets, weights)[0]


def _lowest_latency(targets: list[Target], health: Health, buffer: float) -> Target:
    latencies = [(t, health.of(t.deployment.id).latency) for t in targets]
    unknown = [t for t, latency in latencies if latency is None]
    if unknown:  # explore deployments never measured
        return random.choice(unknown)
    known = [(t, latency) for t, latency in latencies if latency is not None]
    best = min(latency for _, latency in known)
    near = [t for t, latency in known if latency <= best * (1 + buffer)]
    return random.choice(near)


def _rendezvous(session: str, target: Target) -> float:
    digest = hashlib.blake2b(f"{session}\x00{target.deployment.id}".encode(), digest_size=8).digest()
    u = (int.from_bytes(digest, "big") + 1) / (2**64 + 2)  # in (0, 1)
    return -dep_weight(target.deployment) / math.log(u)
