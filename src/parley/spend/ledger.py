"""Budget ledgers: atomic reservations against what remains of several budgets at once.

A request reserves its cost bound on every budget that applies (key, user, team, customer) in one
step, so concurrent requests can never together commit more than remains; after the call the hold
is released and the real cost added. `LocalLedger` keeps holds in this process (spend seeded from
the database, refreshed in the background); `RedisLedger` keeps them in Redis (one Lua script per
step), shared by every instance.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from parley.spend.periods import next_reset
from parley.store.outage import DATABASE_ERRORS, database_unavailable
from parley.store.records import load_spend

log = logging.getLogger("parley.budget")


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """One budget that applies to a request."""

    scope: str  # "key", "user", "team", "customer"
    id: str
    limit: float
    duration: str | None
    reset_at: float | None
    seed: float  # spend as last read from the database
    label: str  # for messages: "key 'alias'", "team 't1'"

    @property
    def key(self) -> str:
        return f"{self.scope}:{self.id}"

    def period_end(self, now: float) -> float | None:
        if self.reset_at is None or not self.duration:
            return self.reset_at
        return next_reset(self.reset_at, self.duration, now) if self.reset_at <= now else self.reset_at


@dataclass(slots=True)
class Grant:
    amount: float  # reserved (may be below the bound asked for)
    binding: BudgetLine | None  # the budget with least room
    remaining: float  # what that budget had left before this reservation


class _Entry:
    __slots__ = ("loaded", "period_end", "spent")

    def __init__(self, spent: float, period_end: float | None) -> None:
        self.spent = spent
        self.period_end = period_end
        self.loaded = time.monotonic()


class LocalLedger:
    """Holds in this process. Exact for one instance; several instances need Redis."""

    def __init__(
        self,
        engine: Any,
        pending: Callable[[str], tuple[float, float]],
        spawn: Callable,
        refresh_seconds: float = 5.0,
    ) -> None:
        self.engine = engine
        self.pending = pending  # ledger key -> (queued_total, committed_total) of the spend writer
        self.spawn = spawn
        self.refresh_seconds = refresh_seconds
        self.entries: dict[str, _Entry] = {}
        self.reserved: dict[str, float] = {}
        self.holds: dict[str, tuple[list[str], float]] = {}
        self._loading: dict[str, asyncio.Future] = {}

    async def prepare(self, lines: list[BudgetLine]) -> None:
        for line in lines:
            entry = self.entries.get(line.key)
            if entry is None:
                try:
                    await self._load(line)
                except DATABASE_ERRORS:
                    raise database_unavailable("budgets not yet loaded cannot be checked") from None
            elif time.monotonic() - entry.loaded > self.refresh_seconds and line.key not in self._loading:
                self.spawn(self._refresh(line, entry))

    async def _refresh(self, line: BudgetLine, entry: _Entry) -> None:
        """Reload in the background; during a database outage keep the known figures and try again
        after the refresh interval (one attempt per interval, not one per request)."""
        try:
            await self._load(line)
        except DATABASE_ERRORS:
            entry.loaded = time.monotonic()

    async def _load(self, line: BudgetLine) -> None:
        waiting = self._loading.get(line.key)
        if waiting is not None:
            await asyncio.shield(waiting)
            return
        future = asyncio.get_running_loop().create_future()
        self._loading[line.key] = future
        try:
            _, committed_before = self.pending(line.key)
            spend, reset_at = await load_spend(self.engine, line.scope, line.id)
            queued_after, _ = self.pending(line.key)
            entry = _Entry(spend + queued_after - committed_before, reset_at or line.reset_at)
            self.entries[line.key] = entry
        finally:
            del self._loading[line.key]
            future.set_result(None)

    async def invalidate(self, key: str | None = None) -> None:
        if key is None:
            self.entries.clear()
        else:
            self.entries.pop(key, None)

    def _remaining(self, line: BudgetLine, now: float) -> float:
        entry = self.entries.get(line.key)
        if entry is None:  # invalidated between prepare and here: use the record's view
            entry = self.entries[line.key] = _Entry(line.seed, line.reset_at)
        if entry.period_end is not None and line.duration and entry.period_end <= now:
            entry.spent = 0.0
            entry.period_end = next_reset(entry.period_end, line.duration, now)
        return line.limit - entry.spent - self.reserved.get(line.key, 0.0)

    def spent(self, line: BudgetLine) -> float:
        self._remaining(line, time.time())
        return self.entries[line.key].spent

    async def reserve(self, request_id: str, lines: list[BudgetLine], bound: float, floor: float) -> Grant:
        await self.prepare(lines)
        now = time.time()
        binding, least = None, float("inf")
        for line in lines:  # no await from here on: atomic within the event loop
            room = self._remaining(line, now)
            if room < least:
                binding, least = line, room
        if least < floor or least <= 0:
            return Grant(0.0, binding, least)
        amount = min(bound, least)
        keys = [line.key for line in lines]
        for key in keys:
            self.reserved[key] = self.reserved.get(key, 0.0) + amount
        self.holds[request_id] = (keys, amount)
        return Grant(amount, binding if amount < bound else None, least)

    async def shrink(self, request_id: str, amount: float, lines: list[BudgetLine]) -> None:
        keys, held = self.holds.get(request_id, ([], 0.0))
        if keys and amount < held:
            for key in keys:
                self.reserved[key] -= held - amount
            self.holds[request_id] = (keys, amount)

    async def settle(self, request_id: str, cost: float, lines: list[BudgetLine]) -> None:
        self.settle_now(request_id, cost, lines)

    def settle_now(self, request_id: str, cost: float, lines: list[BudgetLine]) -> None:
        keys, held = self.holds.pop(request_id, ([], 0.0))
        for key in keys:
            self.reserved[key] = max(0.0, self.reserved.get(key, 0.0) - held)
        for line in lines:
            entry = self.entries.get(line.key)
            if entry is not None:
                entry.spent += cost


_RESERVE = """
local now = tonumber(ARGV[1]); local rid = ARGV[2]; local bound = tonumber(ARGV[3])
local floor = tonumber(ARGV[4]); local expiry = tonumber(ARGV[5])
local least = nil; local which = 0
for i, h in ipairs(KEYS) do
  local base = 5 + (i - 1) * 3
  local limit = tonumber(ARGV[base + 1]); local period = tonumber(ARGV[base + 2])
  local seed = ARGV[base + 3]
  local cur = redis.call('HGET', h, 'period')
  if not cur then
    redis.call('HSET', h, 'spent', seed, 'period', period)
  elseif tonumber(cur) < period then
    redis.call('HSET', h, 'spent', 0, 'period', period)
  end
  local expired = redis.call('ZRANGEBYSCORE', h .. ':exp', '-inf', now)
  for _, m in ipairs(expired) do
    local amt = redis.call('HGET', h .. ':amt', m)
    if amt then redis.call('HINCRBYFLOAT', h, 'reserved', -tonumber(amt)) end
    redis.call('HDEL', h .. ':amt', m); redis.call('ZREM', h .. ':exp', m)
  end
  local room = limit - tonumber(redis.call('HGET', h, 'spent') or 0)
                     - tonumber(redis.call('HGET', h, 'reserved') or 0)
  if least == nil or room < least then least = room; which = i end
end
if least < floor or least <= 0 then return {0, which, tostring(least)} end
local amount = math.min(bound, least)
for _, h in ipairs(KEYS) do
  redis.call('HINCRBYFLOAT', h, 'reserved', amount)
  redis.call('HSET', h .. ':amt', rid, amount)
  redis.call('ZADD', h .. ':exp', expiry, rid)
end
return {tostring(amount), which, tostring(least)}
"""

_SHRINK = """
local rid = ARGV[1]; local amount = tonumber(ARGV[2])
for _, h in ipairs(KEYS) do
  local held = redis.call('HGET', h .. ':amt', rid)
  if held and tonumber(held) > amount then
    redis.call('HINCRBYFLOAT', h, 'reserved', amount - tonumber(held))
    redis.call('HSET', h .. ':amt', rid, amount)
  end
end
return 1
"""

_SETTLE = """
local rid = ARGV[1]; local cost = tonumber(ARGV[2])
for _, h in ipairs(KEYS) do
  local held = redis.call('HGET', h .. ':amt', rid)
  if held then
    redis.call('HINCRBYFLOAT', h, 'reserved', -tonumber(held))
    redis.call('HDEL', h .. ':amt', rid); redis.call('ZREM', h .. ':exp', rid)
  end
  if cost > 0 and redis.call('EXISTS', h) == 1 then redis.call('HINCRBYFLOAT', h, 'spent', cost) end
end
return 1
"""


class RedisLedger:
    """Holds in Redis, shared by every instance; holds of a crashed instance expire."""

    def __init__(self, redis: Any, prefix: str, hold_seconds: float = 900.0) -> None:
        self.redis = redis
        self.prefix = prefix
        self.hold_seconds = hold_seconds
        self._reserve = redis.register_script(_RESERVE)
        self._shrink = redis.register_script(_SHRINK)
        self._settle = redis.register_script(_SETTLE)

    def _keys(self, lines: list[BudgetLine]) -> list[str]:
        return [f"{self.prefix}budget:{line.key}" for line in lines]

    async def reserve(self, request_id: str, lines: list[BudgetLine], bound: float, floor: float) -> Grant:
        now = time.time()
        args: list[Any] = [now, request_id, bound, floor, now + self.hold_seconds]
        for line in lines:
            period = line.period_end(now)
            args += [line.limit, period if period is not None else 0, line.seed]
        amount, which, least = await self._reserve(keys=self._keys(lines), args=args)
        binding = lines[int(which) - 1] if int(which) else None
        amount = float(amount)
        return Grant(amount, binding if amount < bound else None, float(least))

    async def shrink(self, request_id: str, amount: float, lines: list[BudgetLine]) -> None:
        await self._shrink(keys=self._keys(lines), args=[request_id, amount])

    async def settle(self, request_id: str, cost: float, lines: list[BudgetLine]) -> None:
        await self._settle(keys=self._keys(lines), args=[request_id, cost])

    def spent_key(self, line: BudgetLine) -> str:
        return self._keys([line])[0]

    async def invalidate(self, key: str | None = None) -> None:
        """Forget the shared spend of one budget (re-seeded from the database on next use)."""
        if key is not None:
            await self.redis.hdel(f"{self.prefix}budget:{key}", "period", "spent")
