"""With Redis: what a request must ask Redis before it goes upstream, in one round trip.

The rate-limit acquisition, the budget reservation (and the instance's heartbeat with it) and the
router's cooldown read run as the parts of one Lua script, called once per request (EVALSHA)
before the filters that use them; each of those filters then reads its part's answer instead of
calling Redis itself. The parts keep their own rules: a budget missing from Redis aborts the call
before anything changed (the budget filter seeds it and reserves on its own), a rate-limit refusal
stops the reservation after it. A part not asked (no limits, no budget, cooldowns read less than
`cooldown_sync_interval` ago) is left out; with nothing to ask, or Redis down, no call is made and
each filter does what it does without the admission (its own call, or its local fallback).

With leases (`parley.store.lease`, `router_settings.redis_lease_ms`), a request every part can
admit on this process's leases makes no call at all: each part claims first (nothing changes),
then all commit; one part without a lease with room sends the request to Redis as above, and the
parts then ask for new leases along with its own ask.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from parley.core.context import RequestContext
from parley.core.stream import UpstreamReply
from parley.pipeline.filter import Filter, Phase
from parley.router.health import COOLDOWN_PART, Health
from parley.router.table import ModelTable
from parley.store.lease import nothing
from parley.store.lua_batch import Ask, Combined, LuaPart, failed
from parley.store.redis_link import RedisLink, RedisUnavailable


@runtime_checkable
class Asker(Protocol):
    """A filter (or helper) with a part in the admission call."""

    admission_lua: LuaPart

    def admission_ask(self, ctx: RequestContext, body: dict[str, Any] | None) -> Ask | None: ...

    def admitted(self, ctx: RequestContext, ask: Ask, result: Any) -> None: ...

    def lease_claim(self, ctx: RequestContext, body: dict[str, Any] | None) -> Callable[[], None] | None:
        """What admits the request on this process's leases, to run once every part has one
        (`nothing`: no part in this request), or None when Redis must be asked."""
        ...


@runtime_checkable
class Rechecker(Asker, Protocol):
    """An asker whose part has a check (the budget's: seeded from the database first)."""

    async def recheck(self, ctx: RequestContext, ask: Ask, result: Any) -> Ask:
        """The ask to send again once what the check asked for is done."""
        ...


class CooldownAsk:
    """The router's part: the cooldowns of the deployments that may serve the request's model."""

    admission_lua = COOLDOWN_PART

    def __init__(self, health: Health, table: ModelTable) -> None:
        self.health = health
        self.table = table

    def admission_ask(self, ctx: RequestContext, body: dict[str, Any] | None) -> Ask | None:
        targets = self.table.resolve(ctx.model) if ctx.model else []
        return self.health.cooldown_ask([t.deployment.id for t in targets])

    def admitted(self, ctx: RequestContext, ask: Ask, result: Any) -> None:
        self.health.apply_ttls(ask.data, result)

    def lease_claim(self, ctx: RequestContext, body: dict[str, Any] | None) -> Callable[[], None] | None:
        ask = self.admission_ask(ctx, body)  # (read at most every cooldown_sync_interval)
        return nothing if ask is None or not ask.needed else None


MAX_RECHECKS = 2  # calls after the first one a check may ask for (budgets seeded meanwhile)


class Admission(Filter):
    phase = Phase.ADMISSION

    def __init__(self, link: RedisLink, askers: list[Asker]) -> None:
        self.link = link
        self.askers = askers
        self.later = link.later  # settlements queued by earlier requests ride along (part 0)
        self.settle_kinds = self.later.kinds
        parts = [self.later.part(), *(a.admission_lua for a in askers)]
        self.script = Combined(link, parts)
        self.leasing = link.lease_ms > 0

    async def on_request(self, ctx: RequestContext, body: dict[str, Any] | None) -> UpstreamReply | None:
        if self.leasing and self._leased(ctx, body):
            return None
        if not self.link.up:
            return None
        asks = [a.admission_ask(ctx, body) for a in self.askers]
        if not any(ask is not None and ask.needed for ask in asks):
            return None
        carried = self.later.take(self.settle_kinds)
        results = await self._call(ctx, [carried, *asks])
        if results is not None:
            for asker, ask, result in zip(self.askers, asks, results[1:], strict=True):
                if ask is not None and result is not None:
                    asker.admitted(ctx, ask, result)
        return None

    def _leased(self, ctx: RequestContext, body: dict[str, Any] | None) -> bool:
        """Admit the request on leases if every part can (nothing is awaited: atomic)."""
        commits = []
        for asker in self.askers:
            commit = asker.lease_claim(ctx, body)
            if commit is None:
                return False
            if commit is not nothing:
                commits.append(commit)
        for commit in commits:
            commit()
        return True

    async def _call(self, ctx: RequestContext, asks: list[Ask | None]) -> list[Any] | None:
        """Each part's answer; None when Redis gave none (the filters then fall back). A part
        whose check aborted the call is asked again once its asker did what it asked for."""
        carried = asks[0]
        ran = False
        try:
            for _ in range(MAX_RECHECKS + 1):
                results, aborted = await self.script.call(asks)
                if aborted < 0:
                    ran = True
                    return results
                asker, ask = self.askers[aborted - 1], asks[aborted]
                if not isinstance(asker, Rechecker) or ask is None:
                    return None
                asks[aborted] = await asker.recheck(ctx, ask, results[aborted])
            return None  # (budgets that keep disappearing: the filters try on their own)
        except RedisUnavailable:
            if carried is not None:
                failed(carried.data)
                carried = None
            return None
        finally:
            if carried is not None and not ran:  # not run (aborted, or the recheck failed)
                self.later.requeue(carried.data)


def admission(
    link: RedisLink | None, filters: list[Filter], health: Health, table: ModelTable
) -> Admission | None:
    """The admission filter for `filters` (those with a part, in phase order: a rate-limit refusal
    stops the budget reservation), None without Redis."""
    if link is None:
        return None
    askers: list[Asker] = [f for f in sorted(filters, key=lambda f: f.phase) if isinstance(f, Asker)]
    askers.append(CooldownAsk(health, table))
    return Admission(link, askers)
