"""In-process TTL cache of key and customer records, so auth costs no DB round trip per request.

Concurrent misses for the same key share one DB read. While the database cannot be reached, a
record already known is served past its TTL (cached keys keep working) and an unknown one gets
503 with the reason, with one log line when the outage starts and one when it ends.

An invalidation (after an admin change, here or, through Redis pub/sub, on another instance)
drops the affected records and makes any read already in flight not store its stale result.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from parley.store.outage import DATABASE_ERRORS, database_unavailable
from parley.store.records import KeyRecord, Subject, load_customer, load_key

log = logging.getLogger("parley.store")


class RecordCache:
    def __init__(self, engine: Any, ttl: float = 60.0, negative_ttl: float = 5.0) -> None:
        self.engine = engine
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.keys: dict[str, tuple[float, KeyRecord | None]] = {}
        self.customers: dict[str, tuple[float, Subject | None]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future] = {}
        self.generation = 0
        self.misses = 0
        self.down = False  # the last read failed: the database is unreachable

    async def key(self, token: str) -> KeyRecord | None:
        hit = self.keys.get(token)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return await self._load("key", token, self.keys, load_key)

    async def customer(self, user_id: str) -> Subject | None:
        hit = self.customers.get(user_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return await self._load("customer", user_id, self.customers, load_customer)

    async def _load(self, kind: str, ident: str, store: dict, loader: Callable[..., Awaitable]) -> Any:
        waiting = self._inflight.get((kind, ident))
        if waiting is not None:
            return await asyncio.shield(waiting)
        future = asyncio.get_running_loop().create_future()
        self._inflight[(kind, ident)] = future
        generation = self.generation
        self.misses += 1
        try:
            value = await self._read(loader, ident, store)
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            del self._inflight[(kind, ident)]
        if generation == self.generation:
            if len(store) > 100_000:
                store.clear()
            store[ident] = (time.monotonic() + (self.ttl if value is not None else self.negative_ttl), value)
        future.set_result(value)
        return value

    async def _read(self, loader: Callable[..., Awaitable[Any]], ident: str, store: dict[str, Any]) -> Any:
        try:
            value = await loader(self.engine, ident)
        except DATABASE_ERRORS as e:
            if not self.down:
                self.down = True
                log.warning(
                    "database unreachable (%s); serving cached keys, refusing others with 503",
                    type(e).__name__,
                )
            if ident in store:  # known, though expired: still the best answer there is
                return store[ident][1]
            raise database_unavailable("keys not already cached cannot be checked") from None
        if self.down:
            self.down = False
            log.warning("database reachable again")
        return value

    def invalidate(self, kind: str, ident: str | None) -> None:
        """Drop records affected by a change to (kind, ident); kind "all" clears everything."""
        self.generation += 1
        if kind == "key" and ident is not None:
            self.keys.pop(ident, None)
        elif kind in ("user", "team") and ident is not None:
            attr = "user_id" if kind == "user" else "team_id"
            for token, (_, record) in list(self.keys.items()):
                if record is None or getattr(record, attr) == ident:
                    self.keys.pop(token, None)
        elif kind == "customer" and ident is not None:
            self.customers.pop(ident, None)
        else:
            self.keys.clear()
            self.customers.clear()
