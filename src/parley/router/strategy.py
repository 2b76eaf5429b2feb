"""Choosing one target among the healthy ones: the routing strategies and session affinity.

Session affinity uses weighted rendezvous hashing: every worker and instance maps a session to the
same deployment without shared state, and when that deployment cools down the session moves to
its next-best one (and comes back when it recovers), so upstream prompt caches keep hitting.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Any, Mapping

import orjson

from parley.router.health import Health
from parley.router.settings import dep_weight
from parley.router.table import Target

SESSION_HEADER = "x-claude-code-session-id"


def choose(targets: list[Target], strategy: str, health: Health, session: str | None,
           latency_buffer: float = 0.0) -> Target:
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
    unknown = [t for t in targets if health.of(t.deployment.id).latency is None]
    if unknown:  # explore deployments never measured
        return random.choice(unknown)
    best = min(health.of(t.deployment.id).latency for t in targets)
    near = [t for t in targets if health.of(t.deployment.id).latency <= best * (1 + buffer)]
    return random.choice(near)


def _rendezvous(session: str, target: Target) -> float:
    digest = hashlib.blake2b(f"{session}\x00{target.deployment.id}".encode(), digest_size=8).digest()
    u = (int.from_bytes(digest, "big") + 1) / (2 ** 64 + 2)  # in (0, 1)
    return -dep_weight(target.deployment) / math.log(u)


def session_key(headers: Mapping[str, str], body: Mapping[str, Any] | None) -> str | None:
    """The client's session: the Claude Code session header, else a session in metadata.user_id.

    `metadata.user_id` is a JSON string with `session_id` (Claude Code 2.1.78+), or
    `user_<sha>_account_<uuid>_session_<uuid>` (older), or any opaque id (used whole).
    """
    value = headers.get(SESSION_HEADER)
    if value:
        return value
    metadata = body.get("metadata") if body else None
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user_id, str) or not user_id:
        return None
    if user_id.startswith("{"):
        try:
            parsed = orjson.loads(user_id)
        except orjson.JSONDecodeError:
            return user_id
        if isinstance(parsed, dict) and parsed.get("session_id"):
            return str(parsed["session_id"])
        return user_id
    _, found, session = user_id.rpartition("_session_")
    return session if found and session else user_id
