"""Rate-limit counters: in process, or in Redis (atomic Lua) shared by every worker and instance.

Per subject (a LimitSpec):
- requests per minute: a sliding-window log (a sorted set of request times in Redis, an array of
  them in process), exact;
- tokens per minute: a sliding-window counter (this minute + the previous one, weighted by how much
  of it is still inside the window), settled after each call with its real token count;
- parallel requests: a set of request ids in flight, removed when the reply is over (entries older
  than `lease` seconds are dropped when they would fill the set, so a crashed worker cannot hold a
  slot forever).

`acquire` checks every subject and records the request in all of them only if all pass, atomically.
"""

from __future__ import annotations

import logging
import time
from array import array
from dataclasses import dataclass, field

from parley.core.context import LimitSpec
from parley.filters.rate_lease import RateLease, RateLeases
from parley.store.lua_batch import CLOCK, Ask, LuaPart
from parley.store.redis_link import RedisLink, RedisUnavailable

log = logging.getLogger("parley.ratelimit")

WINDOW_MS = 60_000
_NAMES_KEPT = 4096  # subjects whose Redis key names are kept made
LEASE_MS = 900_000
_COMPACT_AT = 4096  # expired request times kept before the in-process log is compacted


@dataclass(slots=True)
class Decision:
    allowed: bool
    spec: LimitSpec | None = None  # the subject that refused, when refused
    kind: str = ""  # "rpm", "tpm" or "parallel"
    wait_ms: int = 0  # until a slot frees (refused), or until the window resets (allowed)
    # per spec (allowed): (requests used in the window incl. this one, tokens used in the window)
    used: list[tuple[int, int]] = field(default_factory=list)


# Lua functions (KEYS and ARGV as parameters: the same body serves a script of its own and a part of
# the admission script, `parley.filters.admission`).
ACQUIRE_FN = """
local function rl_grant(k, limit, used)
  if limit <= 0 then return k end  -- (no limit: the lease counts its requests only)
  local g = math.min(k, math.floor((limit - used) / 8))
  if g < 1 then return 0 end
  return g
end
-- the request's own member (scored now), a lease's `g` members `<prefix>1..g` (scored `score`)
local function rl_record(key, nows, member, g, score, prefix, ttl)
  redis.call('ZADD', key, nows, member)
  if g > 0 then
    local z = {}
    for j = 1, g do z[#z + 1] = score; z[#z + 1] = prefix .. j end
    redis.call('ZADD', key, unpack(z))
  end
  redis.call('PEXPIRE', key, ttl)
end
local function rl_acquire(KEYS, ARGV)
local now, nows = clock()
local n = tonumber(ARGV[1])
local member = ARGV[2]
local lease = tonumber(ARGV[3])
local tag = ARGV[4]
local minute = math.floor(now / 60000)
local frac = (now % 60000) / 60000
local used, pars = {}, {}
for i = 1, n do
  local b = 5 + (i - 1) * 5
  local rpm, tpm, par = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local kr, kt, kp = KEYS[(i - 1) * 3 + 1], KEYS[(i - 1) * 3 + 2], KEYS[(i - 1) * 3 + 3]
  local reqs, toks, pc = 0, 0, 0
  if rpm > 0 then
    redis.call('ZREMRANGEBYSCORE', kr, '-inf', string.format('%d', now - 60000))
    reqs = redis.call('ZCARD', kr)
    if reqs >= rpm then
      local oldest = redis.call('ZRANGE', kr, 0, 0, 'WITHSCORES')
      return {0, i, 'rpm', math.max(1, tonumber(oldest[2]) + 60000 - now)}
    end
  end
  if tpm > 0 then
    local tv = redis.call('HMGET', kt, string.format('%d', minute), string.format('%d', minute - 1))
    local cur, prev = tonumber(tv[1] or '0'), tonumber(tv[2] or '0')
    toks = math.floor(prev * (1 - frac) + cur)
    if toks >= tpm then return {0, i, 'tpm', 60000 - now % 60000} end
  end
  if par > 0 then
    pc = redis.call('ZCARD', kp)
    -- leases older than `lease` (a crashed worker's) are dropped when they would fill the set
    if pc >= par then
      redis.call('ZREMRANGEBYSCORE', kp, '-inf', string.format('%d', now - lease))
      pc = redis.call('ZCARD', kp)
      if pc >= par then return {0, i, 'parallel', 1000} end
    end
  end
  used[#used + 1] = reqs + 1
  used[#used + 1] = toks
  pars[i] = pc + 1
end
local leases = string.format('%d', lease)
local grants = {}
local horizon = 0
if tag ~= '' then horizon = tonumber(ARGV[5]) end
local later = string.format('%d', now + horizon)  -- a leased rpm slot counts from its latest use
local window = string.format('%d', 61000 + horizon)  -- (the rpm log lives as long as its entries)
for i = 1, n do
  local b = 5 + (i - 1) * 5
  local rpm, tpm, par = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local gr, gp = 0, 0
  if tag ~= '' and not (tpm > 0 and used[2 * i] * 2 >= tpm) then
    gr = rl_grant(tonumber(ARGV[b + 4]), rpm, used[2 * i - 1])
    gp = rl_grant(tonumber(ARGV[b + 5]), par, pars[i])
    if gr == 0 or gp == 0 then gr, gp = 0, 0 end
  end
  if rpm > 0 then rl_record(KEYS[(i - 1) * 3 + 1], nows, member, gr, later, tag .. ':', window) end
  if par > 0 then rl_record(KEYS[(i - 1) * 3 + 3], nows, member, gp, nows, tag .. ':p', leases) end
  grants[#grants + 1] = gr
  grants[#grants + 1] = gp
end
table.insert(used, 1, 60000 - now % 60000)
table.insert(used, 1, 1)
if tag ~= '' then
  for _, g in ipairs(grants) do used[#used + 1] = g end
end
return used
end
"""

SETTLE_FN = """
local function rl_settle(KEYS, ARGV)
local minute = string.format('%d', math.floor(clock() / 60000))
local n = tonumber(ARGV[1])
local tokens = tonumber(ARGV[3])
for i = 1, n do
  if tokens > 0 and ARGV[3 + i] == '1' then
    redis.call('HINCRBY', KEYS[(i - 1) * 2 + 1], minute, string.format('%d', tokens))
    redis.call('PEXPIRE', KEYS[(i - 1) * 2 + 1], '130000')
  end
  redis.call('ZREM', KEYS[(i - 1) * 2 + 2], ARGV[2])
end
return 1
end
"""

_ACQUIRE_LUA = CLOCK + ACQUIRE_FN + "return rl_acquire(KEYS, ARGV)"

# The acquisition as a part of the admission call: a refusal stops the parts after it.
ADMIT_PART = LuaPart(
    ACQUIRE_FN + "local function rl_admit(K, A) local r = rl_acquire(K, A); return r, r[1] == 0 end",
    "rl_admit",
)


@dataclass(slots=True)
class _Subject:
    # ms times of the requests in the window, oldest first from `head` (8 bytes each: at thousands
    # of requests a second a minute of them is a large log; a deque of ints took five times that)
    requests: array = field(default_factory=lambda: array("q"))
    head: int = 0
    last: int = 0  # the latest time in the log
    tokens: dict = field(default_factory=dict)  # minute -> tokens
    inflight: dict = field(default_factory=dict)  # member -> ms time


class LocalLimiter:
    """The same rules in process (one worker's view)."""

    def __init__(self) -> None:
        self._subjects: dict[tuple[str, str], _Subject] = {}

    def _subject(self, spec: LimitSpec) -> _Subject:
        key = (spec.scope, spec.id)
        s = self._subjects.get(key)
        if s is None:
            s = self._subjects[key] = _Subject()
        return s

    def acquire(self, specs: list[LimitSpec], member: str) -> Decision:
        now = int(time.time() * 1000)
        minute, frac = now // WINDOW_MS, (now % WINDOW_MS) / WINDOW_MS
        used = []
        for spec in specs:
            s = self._subject(spec)
            times, head, cutoff = s.requests, s.head, now - WINDOW_MS
            end = len(times)
            while head < end and times[head] <= cutoff:  # (each time passes here once)
                head += 1
            s.head = head
            if head > _COMPACT_AT and head * 2 > len(times):  # drop the expired half at once
                del times[:head]
                head = s.head = 0
            count = len(times) - head
            if spec.rpm and count >= spec.rpm:
                return Decision(False, spec, "rpm", times[head] + WINDOW_MS - now)
            toks = int(s.tokens.get(minute - 1, 0) * (1 - frac) + s.tokens.get(minute, 0))
            if spec.tpm and toks >= spec.tpm:
                return Decision(False, spec, "tpm", WINDOW_MS - now % WINDOW_MS)
            if spec.max_parallel and len(s.inflight) >= spec.max_parallel:
                # leases older than LEASE_MS (a request whose end was never seen) are dropped when
                # they would fill the set: the scan is paid at the limit, not on every request
                for m in [m for m, at in s.inflight.items() if at <= now - LEASE_MS]:
                    del s.inflight[m]
                if len(s.inflight) >= spec.max_parallel:
                    return Decision(False, spec, "parallel", 1000)
            used.append((count + 1, toks))
        for spec in specs:
            s = self._subject(spec)
            if spec.rpm:  # (kept in order if the clock steps back: such a time counts a bit longer)
                if now > s.last:
                    s.last = now
                s.requests.append(s.last)
            if spec.max_parallel:
                s.inflight[member] = now
        return Decision(True, wait_ms=WINDOW_MS - now % WINDOW_MS, used=used)

    def settle(self, specs: list[LimitSpec], member: str, tokens: int) -> None:
        minute = int(time.time() // 60)
        for spec in specs:
            s = self._subject(spec)
            s.inflight.pop(member, None)
            if tokens and spec.tpm:
                for m in [m for m in s.tokens if m < minute - 1]:
                    del s.tokens[m]
                s.tokens[minute] = s.tokens.get(minute, 0) + tokens


@dataclass(slots=True)
class Asked:
    """An acquisition asked of Redis: the limits, and the leases asked for with it."""

    specs: list[LimitSpec]
    wants: list[int]  # per spec, the lease size asked for (0: none)
    tag: str  # the leases' tag ('' when none was asked for)


class RedisLimiter:
    """Counters in Redis, and this process's own share counted locally as well.

    A request Redis admits must also fit this process's local counters, which see every request it
    served in the window, whatever admitted them. So while Redis is down the local limiter stands in
    knowing what this process already served, and when Redis comes back empty (a restart) no process
    serves more than a window's limit on its own: across N instances a window can admit at most N
    limits, never more per instance (see docs/reliability.md). Far from their limits, subjects are
    served from leases (`parley.filters.rate_lease`) between calls to Redis."""

    def __init__(self, link: RedisLink, local: LocalLimiter) -> None:
        self.link = link
        self.local = local
        self._acquire = link.script(_ACQUIRE_LUA)
        self._settle_step = link.later.register(SETTLE_FN, "rl_settle")
        self._names: dict[tuple[str, str], tuple[str, str, str]] = {}  # subject -> its keys
        self.leases = RateLeases(link, self._keys) if link.lease_ms > 0 else None

    def _keys(self, spec: LimitSpec) -> tuple[str, str, str]:
        keys = self._names.get((spec.scope, spec.id))
        if keys is None:
            if len(self._names) >= _NAMES_KEPT:
                self._names.clear()
            base = self.link.key("rl", spec.scope, spec.id)
            keys = self._names[spec.scope, spec.id] = (base + ":req", base + ":tok", base + ":par")
        return keys

    def ask(self, specs: list[LimitSpec], member: str, lease: bool = True) -> Ask:
        """The acquisition, as a part of the admission call (`ADMIT_PART`), with leases asked for
        the subjects whose lease is out (`lease`: only where the settlements queued ride along
        first, so Redis counts what the closed leases give back before it grants new ones)."""
        leases = self.leases if lease else None
        wants = leases.wants(specs) if leases is not None else [0] * len(specs)
        tag = leases.tag() if leases is not None and any(wants) else ""
        keys: list[str] = []
        args: list = [len(specs), member, LEASE_MS, tag, self.link.lease_ms]
        for spec, want in zip(specs, wants, strict=True):
            keys.extend(self._keys(spec))
            args.extend([spec.rpm or 0, spec.tpm or 0, spec.max_parallel or 0, want, want])
        return Ask(keys, args, data=Asked(specs, wants, tag))

    async def acquire(self, specs: list[LimitSpec], member: str) -> tuple[Decision, bool]:
        """The decision, and whether Redis made it (False: the local fallback did)."""
        ask = self.ask(specs, member, lease=False)
        try:
            out = await self.link.eval(self._acquire, ask.keys, ask.args)
        except RedisUnavailable:
            return self.local.acquire(specs, member), False
        return self.decide(ask.data, member, out)

    def decide(self, asked: Asked, member: str, out: list) -> tuple[Decision, bool]:
        """The decision from Redis's answer to the acquisition (alone or in the admission call)."""
        specs = asked.specs
        if int(out[0]) == 0:
            if self.leases is not None and asked.tag:
                for spec, want in zip(specs, asked.wants, strict=True):
                    if want:
                        self.leases.install((spec.scope, spec.id), None)
            kind = out[2].decode() if isinstance(out[2], bytes) else str(out[2])
            return Decision(False, specs[int(out[1]) - 1], kind, int(out[3])), True
        used = [(int(out[2 + 2 * i]), int(out[3 + 2 * i])) for i in range(len(specs))]
        if self.leases is not None and asked.tag:  # (installed first: given back if refused below)
            self.leases.granted(specs, asked.wants, asked.tag, out, used)
        own = self.local.acquire(specs, member)  # this process's share, counted here too
        if not own.allowed:  # Redis forgot what this process already served: give the slot back
            self.settle(specs, member, 0, True)
            return own, False
        return Decision(True, wait_ms=int(out[1]), used=used), True

    def claim(self, specs: list[LimitSpec]) -> list[RateLease] | None:
        """Leases that can admit a request under all of `specs` now (None: ask Redis)."""
        return self.leases.claim(specs) if self.leases is not None else None

    def leased(self, specs: list[LimitSpec], leases: list[RateLease], member: str) -> Decision:
        """Admit a request on `leases` (from `claim`, nothing awaited since)."""
        for lease in leases:
            lease.admit()
        own = self.local.acquire(specs, member)
        if not own.allowed:
            return own
        now = int(time.time() * 1000)
        return Decision(True, wait_ms=WINDOW_MS - now % WINDOW_MS, used=[lease.used() for lease in leases])

    def settle(
        self, specs: list[LimitSpec], member: str, tokens: int, shared: bool | list[RateLease]
    ) -> None:
        """After the reply: locally now; in Redis with the next batch of settlements (a leased
        request: with its leases' ends)."""
        self.local.settle(specs, member, tokens)  # the local counters see every request either way
        if not isinstance(shared, bool):
            for lease in shared:
                lease.finish(tokens)
            return
        if not shared:
            return
        keys: list[str] = []
        args: list = [len(specs), member, tokens]
        for spec in specs:
            _, tok, par = self._keys(spec)
            keys.extend([tok, par])
            args.append("1" if spec.tpm else "0")

        def failed() -> None:
            log.warning("rate limits: could not settle %d tokens in Redis; counted locally only", tokens)

        self.link.later.add(self._settle_step, keys, args, failed)
