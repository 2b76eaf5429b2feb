"""What the router knows about each deployment: load, latency, usage, failures, cooldowns.

Load (in flight), latency and per-minute usage are per process. Failure counts and cooldowns are
shared through Redis when it is configured: a deployment one instance cools down is skipped by
every instance (each re-reads the cooldowns at most every `cooldown_sync_interval` seconds, and at
once after a local failure). Without Redis, or while Redis is down, they are kept in process.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from parley.router.settings import RouterSettings
from parley.store.lua_batch import Ask, LuaPart
from parley.store.redis_link import RedisLink, RedisUnavailable

log = logging.getLogger("parley.router")

_EWMA = 0.3

_FAIL_LUA = """
local c = redis.call('INCR', KEYS[1])
if c == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if c >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return tonumber(ARGV[3])
end
return 0
"""

# The cooldowns left (ms; <= 0: none) of some deployments, as a part of the admission call.
COOLDOWN_PART = LuaPart(
    """
local function cooldown_ttls(KEYS, ARGV)
  local out = {}
  for i, k in ipairs(KEYS) do out[i] = redis.call('PTTL', k) end
  return out
end
""",
    run="cooldown_ttls",
)


@dataclass(slots=True)
class DeploymentHealth:
    inflight: int = 0
    latency: float | None = None  # EWMA of seconds to the first byte
    fails: deque[float] = field(default_factory=deque)  # monotonic times of recent failures
    cooldown_until: float = 0.0  # monotonic
    minute: int = 0  # the wall-clock minute `requests`/`tokens` count
    requests: int = 0
    tokens: int = 0


class Health:
    def __init__(self, settings: RouterSettings, redis: RedisLink | None = None) -> None:
        self.settings = settings
        self.redis = redis
        self._deps: dict[str, DeploymentHealth] = {}
        self._synced: dict[str, float] = {}  # deployment id -> monotonic time of last Redis read
        self._names: dict[str, str] = {}  # deployment id -> its cooldown key (deployments are few)
        self._fail_script = redis.script(_FAIL_LUA) if redis is not None else None

    def of(self, dep_id: str) -> DeploymentHealth:
        h = self._deps.get(dep_id)
        if h is None:
            h = self._deps[dep_id] = DeploymentHealth()
        return h

    # load and latency ------------------------------------------------------------------------
    def begin(self, dep_id: str) -> None:
        h = self.of(dep_id)
        h.inflight += 1
        self._usage(h).requests += 1

    def end(self, dep_id: str, tokens: int = 0) -> None:
        h = self.of(dep_id)
        h.inflight = max(0, h.inflight - 1)
        if tokens:
            self._usage(h).tokens += tokens

    def observe_latency(self, dep_id: str, seconds: float) -> None:
        h = self.of(dep_id)
        h.latency = seconds if h.latency is None else (1 - _EWMA) * h.latency + _EWMA * seconds

    def usage(self, dep_id: str) -> tuple[int, int]:
        """(requests, tokens) this deployment served in the current minute."""
        h = self._usage(self.of(dep_id))
        return h.requests, h.tokens

    @staticmethod
    def _usage(h: DeploymentHealth) -> DeploymentHealth:
        minute = int(time.time() // 60)
        if h.minute != minute:
            h.minute, h.requests, h.tokens = minute, 0, 0
        return h

    # failures and cooldowns ------------------------------------------------------------------
    def cooling(self, dep_id: str, now: float | None = None) -> float:
        """Seconds of cooldown left (0 when the deployment may be used)."""
        now = time.monotonic() if now is None else now
        return max(0.0, self.of(dep_id).cooldown_until - now)

    def _stale(self, dep_ids: list[str], force: bool = False) -> list[str]:
        now = time.monotonic()
        interval = self.settings.cooldown_sync_interval
        return [d for d in dep_ids if force or now - self._synced.get(d, -1e9) >= interval]

    def cooldown_ask(self, dep_ids: list[str]) -> Ask | None:
        """The cooldowns of `dep_ids`, to read with the admission call: needed when one of them
        is older than the interval, else refreshed only if the call is made anyway."""
        if self.redis is None or not dep_ids:
            return None
        keys = [self._key(d) for d in dep_ids]
        return Ask(keys, [], needed=bool(self._stale(dep_ids)), data=dep_ids)

    def _key(self, dep_id: str) -> str:
        key = self._names.get(dep_id)
        if key is None:
            assert self.redis is not None
            key = self._names[dep_id] = self.redis.key("cooldown", dep_id)
        return key

    async def sync(self, dep_ids: list[str], force: bool = False) -> None:
        """Refresh cooldowns of `dep_ids` from Redis if the local copy is older than the interval
        (the admission call usually has: then there is nothing to do here)."""
        if self.redis is None or not self.redis.up:
            return
        stale = self._stale(dep_ids, force)
        if not stale:
            return
        keys = [self.redis.key("cooldown", d) for d in stale]

        async def read(client):
            pipe = client.pipeline(transaction=False)
            for k in keys:
                pipe.pttl(k)
            return await pipe.execute()

        try:
            ttls = await self.redis.run(read)
        except RedisUnavailable:
            return
        self.apply_ttls(stale, ttls)

    def apply_ttls(self, dep_ids: list[str], ttls: list[Any]) -> None:
        """What Redis says is left of each deployment's cooldown (ms; <= 0: none)."""
        now = time.monotonic()
        for dep_id, ttl in zip(dep_ids, ttls, strict=False):
            self._synced[dep_id] = now
            h = self.of(dep_id)
            if isinstance(ttl, int) and ttl > 0:
                h.cooldown_until = max(h.cooldown_until, now + ttl / 1000.0)
            elif h.cooldown_until > now:
                h.cooldown_until = now  # another instance's cooldown ended early? trust Redis

    async def fail(self, dep_id: str, reason: str) -> float:
        """Count a failure; returns the cooldown started (seconds), 0 if none."""
        s = self.settings
        redis, script = self.redis, self._fail_script  # (both set or both None)
        if redis is not None and script is not None and redis.up:
            try:
                ms = await redis.eval(
                    script,
                    [redis.key("fails", dep_id), redis.key("cooldown", dep_id)],
                    [s.allowed_fails, int(s.allowed_fails_window * 1000), int(s.cooldown_time * 1000)],
                )
            except RedisUnavailable:
                return self._fail_local(dep_id, reason)
            if ms:
                self._start_cooldown(dep_id, ms / 1000.0, reason)
            return ms / 1000.0 if ms else 0.0
        return self._fail_local(dep_id, reason)

    def _fail_local(self, dep_id: str, reason: str) -> float:
        s = self.settings
        h = self.of(dep_id)
        now = time.monotonic()
        h.fails.append(now)
        while h.fails and h.fails[0] <= now - s.allowed_fails_window:
            h.fails.popleft()
        if len(h.fails) >= s.allowed_fails:
            h.fails.clear()
            self._start_cooldown(dep_id, s.cooldown_time, reason)
            return s.cooldown_time
        return 0.0

    def _start_cooldown(self, dep_id: str, seconds: float, reason: str) -> None:
        h = self.of(dep_id)
        h.cooldown_until = max(h.cooldown_until, time.monotonic() + seconds)
        log.warning(
            "deployment %s cooling down for %.1fs after %d failures (last: %s)",
            dep_id,
            seconds,
            self.settings.allowed_fails,
            reason,
        )
