"""Where cached replies live: in process (LRU with expiry) or in Redis (shared)."""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.store import tables as t
from parley.store.outage import DATABASE_ERRORS
from parley.store.redis_link import RedisLink, RedisUnavailable


class CacheStore(Protocol):
    """Where cached replies live: in process, or in Redis."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float) -> None: ...


class LocalStore:
    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if expires <= time.monotonic():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._items[key] = (time.monotonic() + ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)


class RedisStore:
    """Entries under `<prefix>:cache:<namespace>:<key>`; a Redis outage reads as a miss."""

    def __init__(self, link: RedisLink, namespace: str | None = None) -> None:
        self.link = link
        self.namespace = namespace

    def _key(self, key: str) -> str:
        return self.link.key("cache", *([self.namespace] if self.namespace else []), key)

    async def get(self, key: str) -> bytes | None:
        try:
            value: bytes | None = await self.link.command("GET", self._key(key))
        except RedisUnavailable:
            return None
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        with contextlib.suppress(RedisUnavailable):
            await self.link.command("SET", self._key(key), value, "PX", max(1, int(ttl * 1000)))


class DatabaseStore:
    """Entries in the `parley_cache` table, shared by every instance on the database; expired
    entries are replaced on write and ignored on read. A database outage reads as a miss."""

    def __init__(self, engine: AsyncEngine, namespace: str | None = None) -> None:
        self.engine = engine
        self.prefix = f"{namespace}:" if namespace else ""

    async def get(self, key: str) -> bytes | None:
        c = t.cache_entries
        query = sa.select(c.c.value).where(c.c.key == self.prefix + key, c.c.expires > time.time())
        try:
            async with self.engine.connect() as conn:
                value = (await conn.execute(query)).scalar()
        except DATABASE_ERRORS:
            return None
        return bytes(value) if value is not None else None

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        c = t.cache_entries
        name = self.prefix + key
        with contextlib.suppress(*DATABASE_ERRORS):
            async with self.engine.begin() as conn:
                await conn.execute(sa.delete(c).where(c.c.key == name))
                await conn.execute(sa.insert(c).values(key=name, value=value, expires=time.time() + ttl))
