"""Budget ledgers: atomic reservations against what remains of several budgets at once.

A request reserves its cost bound on every budget that applies (key, user, team, customer) in one
step, so concurrent requests can never together commit more than remains; after the call the hold
is released and the real cost added. `LocalLedger` keeps holds in this process (spend seeded from
the database, refreshed in the background); `RedisLedger` keeps them in Redis (one Lua script per
step, `parley.spend.budget_lua`), shared by every instance, and falls back to its `LocalLedger`
while Redis is down, with 1/N of what each budget had left for each of the N processes.

In Redis each hold names its instance; every instance refreshes a short-lived heartbeat key, and a
reservation first releases the holds of instances whose heartbeat is gone (a crashed gateway's
money is free again within the heartbeat TTL). A budget missing from Redis (a restart, an admin
edit) is seeded from the database's settled spend, never from a cached record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from parley.spend.budget_lease import BudgetLease, BudgetLeases
from parley.spend.budget_lua import PEERS, RESERVE, SETTLE, SETTLE_FN, SHRINK
from parley.spend.periods import next_reset
from parley.store.lua_batch import Ask
from parley.store.outage import DATABASE_ERRORS, database_unavailable
from parley.store.records import load_spend
from parley.store.redis_link import RedisLink, RedisUnavailable

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
    capped: int = 0  # > 0: max_tokens capped to this, the hold already shrunk to it (Redis only)


class _Entry:
    __slots__ = ("loaded", "period_end", "spent")

    def __init__(self, spent: float, period_end: float | None) -> None:
        self.spent = spent
        self.period_end = period_end
        self.loaded = time.monotonic()


Pending = Callable[[str], tuple[float, float]]


async def settled_spend(engine: Any, pending: Pending, line: BudgetLine) -> tuple[float, float | None]:
    """(spend, budget_reset_at) of a budget: the database's, plus what this instance's spend writer
    has queued but not yet committed (counted once, however the flush and the read interleave)."""
    _, committed_before = pending(line.key)
    spend, reset_at = await load_spend(engine, line.scope, line.id)
    queued_after, _ = pending(line.key)
    return spend + queued_after - committed_before, reset_at


class LocalLedger:
    """Holds in this process. Exact for one instance; several instances need Redis."""

    def __init__(
        self,
        engine: Any,
        pending: Pending,
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
        # While a Redis outage splits budgets between processes (`begin_share`): this process's
        # part of what each budget had left when it was first used in the outage, and what it has
        # settled on each since.
        self.share = 1.0
        self.allowance: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def begin_share(self, share: float) -> None:
        """From now on hold and spend at most `share` of what each budget has left (its spend
        re-read from the database: call `invalidate` first)."""
        self.share = share
        self.allowance.clear()
        self.used.clear()

    def end_share(self) -> None:
        self.begin_share(1.0)

    def adopt(self, request_id: str, keys: list[str], amount: float) -> None:
        """A hold taken elsewhere (in Redis, before an outage), now counted here."""
        for key in keys:
            self.reserved[key] = self.reserved.get(key, 0.0) + amount
        self.holds[request_id] = (keys, amount)

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
            spend, reset_at = await settled_spend(self.engine, self.pending, line)
            self.entries[line.key] = _Entry(spend, reset_at or line.reset_at)
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
        reserved = self.reserved.get(line.key, 0.0)
        room = line.limit - entry.spent - reserved
        if self.share < 1.0:
            allowed = self.allowance.get(line.key)
            if allowed is None:
                allowed = self.allowance[line.key] = max(0.0, line.limit - entry.spent) * self.share
            room = min(room, allowed - self.used.get(line.key, 0.0) - reserved)
        return room

    def spent(self, line: BudgetLine) -> float:
        self._remaining(line, time.time())
        return self.entries[line.key].spent

    async def reserve(
        self,
        request_id: str,
        lines: list[BudgetLine],
        bound: float,
        floor: float,
        input_cost: float = 0.0,
        unit_out: float = 0.0,
    ) -> Grant:
        """Hold up to `bound` (at least `floor`) on every line; capping is left to the caller here
        (`shrink`), so `input_cost` and `unit_out` are not used."""
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

    def release(self, request_id: str, cost: float, lines: list[BudgetLine]) -> None:
        """After the call: settle now, in step with the spend writer's queue."""
        self.settle_now(request_id, cost, lines)

    def settle_now(self, request_id: str, cost: float, lines: list[BudgetLine]) -> None:
        keys, held = self.holds.pop(request_id, ([], 0.0))
        for key in keys:
            self.reserved[key] = max(0.0, self.reserved.get(key, 0.0) - held)
        for line in lines:
            entry = self.entries.get(line.key)
            if entry is not None:
                entry.spent += cost
            if self.share < 1.0:
                self.used[line.key] = self.used.get(line.key, 0.0) + cost


_MAX_UNSETTLED = 100_000  # settlements kept for retry while Redis is down (then the hold expires)


class RedisLedger:
    """Holds in Redis, shared by every instance, through the gateway's one `RedisLink`.

    While the link is down, requests reserve on `local` (this instance's view: the database's spend
    plus its own holds), which then holds and spends at most 1/N of what each budget had left, N
    being the processes that shared Redis when it was last reached (`peers`, counted by `beat`):
    together they stay within the budget. The holds this process had in Redis move to `local`.
    Settlements that could not reach Redis are retried by `beat`, which the store calls every
    `heartbeat_interval` to keep this instance's holds alive. A reservation also refreshes the
    heartbeat, so `beat` sends one only when none did lately.
    """

    def __init__(
        self,
        link: RedisLink,
        local: LocalLedger,
        instance: str,
        hold_seconds: float = 900.0,
        heartbeat_ttl: float = 5.0,
        heartbeat_every: float = 1.0,
    ) -> None:
        self.link = link
        self.local = local
        self.instance = instance
        self.hold_seconds = hold_seconds
        self.heartbeat_ttl = heartbeat_ttl
        self.heartbeat_due = heartbeat_every / 2  # a heartbeat is sent when none was this long
        self._reserve = link.script(RESERVE)
        self._shrink = link.script(SHRINK)
        self._settle = link.script(SETTLE)
        self._settle_step = link.later.register(SETTLE_FN, "budget_settle")
        self._local_holds: set[str] = set()
        self._held: dict[str, tuple[list[str], float]] = {}  # holds in Redis: rid -> (keys, amount)
        self.peers = 1  # processes sharing Redis, this one included (as last counted)
        self._peers = link.script(PEERS)
        self._peers_key = link.key("peers")
        self._unsettled: dict[str, tuple[float, list[BudgetLine]]] = {}
        self._shared = True  # False while reservations go to `local`
        self._alive_at = -1e9  # monotonic time this instance's heartbeat was last sent
        self._names: dict[str, str] = {}  # BudgetLine.key -> its hash's name in Redis
        self._alive_prefix = link.key("alive", "")  # + an instance id: its heartbeat key
        self.leases: BudgetLeases | None = None  # far from every limit, requests hold on these
        if link.lease_ms > 0:
            self.leases = BudgetLeases(link.lease_ms, link.lease_max_requests, self._settle_lease)
            link.closers.append(self.leases.close_all)

    def _keys(self, lines: list[BudgetLine]) -> list[str]:
        names = self._names
        if len(names) >= 4096:  # (key names are kept made for that many budgets)
            names.clear()
        out = []
        for line in lines:
            name = names.get(line.key)
            if name is None:
                name = names[line.key] = self.link.key("budget", line.key)
            out.append(name)
        return out

    @property
    def _alive_key(self) -> str:
        return self.link.key("alive", self.instance)

    async def reserve(
        self,
        request_id: str,
        lines: list[BudgetLine],
        bound: float,
        floor: float,
        input_cost: float = 0.0,
        unit_out: float = 0.0,
    ) -> Grant:
        """Hold up to `bound` (at least `floor`); when less than the bound is left and `unit_out`
        (the output price per token) is set, the grant says what max_tokens is capped to."""
        try:
            grant = await self._reserve_shared(request_id, lines, bound, floor, input_cost, unit_out)
        except RedisUnavailable:
            return await self._reserve_local(request_id, lines, bound, floor)
        return grant

    async def _reserve_local(
        self, request_id: str, lines: list[BudgetLine], bound: float, floor: float
    ) -> Grant:
        if self._shared:  # the local view is stale from before the outage: re-read the database
            self._shared = False
            if self.leases is not None:  # requests in flight on leases: held in `local` too
                for lease in self.leases.live:
                    if lease.inflight and lease.tag not in self._local_holds:
                        self.local.adopt(lease.tag, [line.key for line in lease.lines], lease.held)
                        self._local_holds.add(lease.tag)
                        lease.cost_before = lease.cost
                self.leases.close_all()
            await self.local.invalidate()
            self.local.begin_share(1.0 / max(1, self.peers))
            for rid, (keys, amount) in self._held.items():  # (released into `local` from now on)
                self.local.adopt(rid, keys, amount)
                self._local_holds.add(rid)
            self._held.clear()
        self._local_holds.add(request_id)
        return await self.local.reserve(request_id, lines, bound, floor)

    async def _reserve_shared(
        self,
        request_id: str,
        lines: list[BudgetLine],
        bound: float,
        floor: float,
        input_cost: float,
        unit_out: float,
    ) -> Grant:
        seeds: dict[int, float] = {}
        for _ in range(3):  # a budget missing from Redis is seeded from the database, then reserved
            ask = self.ask(request_id, lines, bound, floor, input_cost, unit_out, seeds)
            out = await self._call_reserve(ask)
            grant = self.grant(lines, bound, out, request_id)
            if grant is not None:
                return grant
            for i in out[1:]:
                seeds[int(i) - 1] = await self.seed(lines[int(i) - 1])
        raise RedisUnavailable("budgets kept disappearing while being seeded")

    async def _call_reserve(self, ask: Ask) -> Any:
        return await self.link.eval(self._reserve, ask.keys, ask.args)

    def ask(
        self,
        request_id: str,
        lines: list[BudgetLine],
        bound: float,
        floor: float,
        input_cost: float = 0.0,
        unit_out: float = 0.0,
        seeds: dict[int, float] | None = None,
        lease: tuple[str, float] = ("", 0.0),
    ) -> Ask:
        """The reservation's keys and arguments (alone, or as a part of the admission call), with
        a lease (tag, amount) to hold as well if far enough from every limit."""
        now = time.time()
        args: list[Any] = [now, request_id, bound, floor, now + self.hold_seconds, self.instance]
        args += [self._alive_prefix, self._heartbeat(), input_cost, unit_out]
        for i, line in enumerate(lines):
            period = line.period_end(now)
            args += [line.limit, period if period is not None else 0, (seeds or {}).get(i, "")]
        if lease[0]:
            args += lease
        return Ask(self._keys(lines), args)

    def _heartbeat(self) -> int:
        """The heartbeat's TTL (ms) when one is due with this call, else 0 (none is sent)."""
        now = time.monotonic()
        if now - self._alive_at < self.heartbeat_due:
            return 0
        self._alive_at = now  # (a failed call is made up for by `beat`: the TTL is 5 beats)
        return int(self.heartbeat_ttl * 1000)

    def grant(
        self,
        lines: list[BudgetLine],
        bound: float,
        out: list[Any],
        request_id: str,
        lease: tuple[str, float] = ("", 0.0),
    ) -> Grant | None:
        """Redis's answer to a reservation; None when budgets must first be seeded (nothing held)."""
        if not self._shared:
            self._shared = True
            self.local.end_share()
        if out[0] in (b"seed", "seed"):  # (the admission call's answers are JSON: str)
            return None
        if lease[0] and self.leases is not None:
            leased = out[4] if len(out) > 4 else ""
            self.leases.granted(lines, lease[0], float(leased) if leased not in ("", b"") else None)
        amount, which = float(out[0]), int(out[1])
        if amount > 0:  # (its upper bound when capped: counted in full if an outage comes)
            self._held[request_id] = ([line.key for line in lines], amount)
        binding = lines[which - 1] if which else None
        return Grant(amount, binding if amount < bound else None, float(out[2]), int(out[3]))

    async def seed(self, line: BudgetLine) -> float:
        """What a budget Redis does not hold has spent: the database's settled spend."""
        try:
            spend, reset_at = await settled_spend(self.local.engine, self.local.pending, line)
        except DATABASE_ERRORS:  # Redis lost the budget and the database is down: nothing to trust
            raise database_unavailable("budgets Redis no longer holds cannot be re-read") from None
        if reset_at is not None and line.duration and reset_at <= time.time():
            return 0.0  # the stored spend is of a period that has ended (reset by the writer)
        return spend

    async def shrink(self, request_id: str, amount: float, lines: list[BudgetLine]) -> None:
        if request_id in self._local_holds:
            await self.local.shrink(request_id, amount, lines)
            return
        keys = self._keys(lines)
        with contextlib.suppress(RedisUnavailable):  # the larger hold stays: conservative
            await self.link.eval(self._shrink, keys, [request_id, amount])

    def release(self, request_id: str, cost: float, lines: list[BudgetLine]) -> None:
        """After the call: a local hold is settled now; a shared one with the next batch of
        settlements sent to Redis (kept for `beat` to retry if Redis cannot be reached)."""
        if request_id in self._local_holds:
            self._local_holds.discard(request_id)
            self.local.settle_now(request_id, cost, lines)
            if cost > 0:  # Redis still counts the spend from before the outage: add this to it
                self._remember(request_id, cost, lines)
        else:
            self._held.pop(request_id, None)
            args = [request_id, cost, self.instance]
            self.link.later.add(
                self._settle_step, self._keys(lines), args, lambda: self._remember(request_id, cost, lines)
            )

    def _settle_lease(self, lease: BudgetLease) -> None:
        """A lease whose requests are all done: settled like a request's hold (in `local` too for
        the requests in flight on it when Redis went down)."""
        tag, cost, lines = lease.tag, lease.cost, lease.lines
        if tag in self._local_holds:
            self._local_holds.discard(tag)
            self.local.settle_now(tag, cost - lease.cost_before, lines)
            if cost > 0:
                self._remember(tag, cost, lines)
            return
        args = [tag, cost, self.instance]
        self.link.later.add(
            self._settle_step, self._keys(lines), args, lambda: self._remember(tag, cost, lines)
        )

    async def settle(self, request_id: str, cost: float, lines: list[BudgetLine]) -> None:
        keys = self._keys(lines)
        args: list[str | float] = [request_id, cost, self.instance]
        try:
            await self.link.eval(self._settle, keys, args)
        except RedisUnavailable:
            self._remember(request_id, cost, lines)

    def _remember(self, request_id: str, cost: float, lines: list[BudgetLine]) -> None:
        """A settlement for Redis to get when it answers again (`beat` retries it)."""
        if len(self._unsettled) < _MAX_UNSETTLED:
            self._unsettled[request_id] = (cost, lines)

    async def beat(self) -> None:
        """Refresh this instance's heartbeat unless a reservation did lately; then retry
        settlements Redis missed. Raises RedisUnavailable when Redis is down."""
        ttl = self._heartbeat()
        if ttl:
            await self.link.run(lambda c: c.set(self._alive_key, 1, px=ttl))
        now = time.time()
        peers: list[str | float] = [now, now + self.heartbeat_ttl, self.instance]
        self.peers = int(await self.link.eval(self._peers, [self._peers_key], peers))
        for request_id, (cost, lines) in list(self._unsettled.items()):
            del self._unsettled[request_id]
            await self.settle(request_id, cost, lines)

    async def invalidate(self, key: str | None = None) -> None:
        """Forget the shared spend of one budget (re-seeded from the database on next use)."""
        await self.local.invalidate(key)
        if self.leases is not None:
            self.leases.close_budget(key)
        if key is not None:
            name = self.link.key("budget", key)
            with contextlib.suppress(RedisUnavailable):
                await self.link.run(lambda c: c.hdel(name, "period", "spent"))
