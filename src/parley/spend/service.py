"""The keys-and-spend service on a gateway: database, record cache, spend writer, budget ledger,
prices, and (with Redis) shared holds and cross-instance cache invalidation.

The gateway builder (`parley.gateway`) makes one when a database is configured
(general_settings.database_url or DATABASE_URL), with the key authenticator, the key, budget and
spend filters and the admin routes around it.

Spend rows go through a local journal (`parley.spend.journal`) unless general_settings.spend_journal
is false: at start, journals left by processes that are gone are replayed into the database
(idempotent: rows already there are skipped, and only new rows add to spend totals).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from parley.config import Config, GeneralSettings
from parley.core.tasks import Tasks
from parley.spend.journal import SpendJournal, claim_orphans, database_key, default_directory
from parley.spend.ledger import LocalLedger, RedisLedger
from parley.spend.pricing import PriceTable
from parley.spend.writer import SpendWriter
from parley.store.cache import RecordCache
from parley.store.db import make_engine, migrate, normalize_url
from parley.store.redis_link import RedisLink
from parley.store.tables import spend_logs

_COLUMNS = frozenset(str(c.name) for c in spend_logs.c)
_REQUIRED = tuple(str(c.name) for c in spend_logs.c if not c.nullable and c.server_default is None)

log = logging.getLogger("parley.store")


class StoreService:
    def __init__(self, config: Config, link: RedisLink | None, tasks: Tasks) -> None:
        settings = config.general
        self.config = config
        self.settings = settings
        assert settings.database_url is not None
        self.url = settings.database_url
        self.engine = make_engine(self.url, settings)
        self.cache = RecordCache(self.engine, ttl=settings.key_cache_ttl)
        self.journal = make_journal(self.url, settings)
        self.writer = SpendWriter(
            self.engine,
            interval=settings.spend_flush_interval,
            batch_size=settings.spend_batch_size,
            journal=self.journal,
        )
        self.prices = PriceTable()
        self.redis_url = link.url if link is not None else None
        self.prefix = (link.prefix + ":") if link is not None else "parley:"
        self.redis: Any = None
        self.ledger: Any = LocalLedger(
            self.engine, self._pending, tasks.spawn, refresh_seconds=settings.budget_refresh_seconds
        )
        if self.redis_url:
            import redis.asyncio as aioredis

            self.redis = aioredis.from_url(self.redis_url)
            self.ledger = RedisLedger(self.redis, self.prefix)
        self._listener: asyncio.Task | None = None

    def _pending(self, key: str) -> tuple[float, float]:
        return self.writer.queued_total.get(key, 0.0), self.writer.committed_total.get(key, 0.0)

    @property
    def channel(self) -> str:
        return f"{self.prefix}invalidate"

    async def start(self) -> None:
        await migrate(self.engine)
        if self.journal is not None:
            await asyncio.to_thread(self.journal.open)
            await self.replay_journals()
        self.writer.start()
        if self.redis is not None:
            pubsub = self.redis.pubsub()
            await pubsub.subscribe(self.channel)
            self._listener = asyncio.get_running_loop().create_task(self._listen(pubsub))

    async def stop(self) -> None:
        await self.writer.stop()
        if self.journal is not None:
            await asyncio.to_thread(self.journal.close)
        if self._listener is not None:
            self._listener.cancel()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()

    async def replay_journals(self) -> int:
        """Write the rows of journals left by stopped processes; how many were new to the database.

        The rows move into this process's journal (synced) before the old files are deleted, so a
        crash here loses nothing; the database skips rows it already has."""
        assert self.journal is not None
        journal = self.journal
        orphans = await asyncio.to_thread(claim_orphans, journal.directory, journal.db_key, journal.name)
        if not orphans.journals:
            return 0
        rows = [row for row in orphans.rows if _complete(row)]
        if len(rows) < len(orphans.rows):
            log.error("spend journal: skipped %d incomplete rows", len(orphans.rows) - len(rows))
        for row in rows:
            self.writer.enqueue(row)
        await asyncio.to_thread(journal.sync)
        await asyncio.to_thread(orphans.release)
        before = self.writer.rows_inserted
        written = await self.writer.flush()
        inserted = self.writer.rows_inserted - before
        log.warning(
            "spend journal: %d rows from %d journal(s) of stopped processes in %s; %d were missing from "
            "the database%s",
            len(rows),
            orphans.journals,
            journal.directory,
            inserted,
            "" if written else " (the rest are queued: the database write failed)",
        )
        return inserted

    async def invalidate(self, kind: str, ident: str | None, budget: bool = False) -> None:
        """After an admin change: drop cached records here and on every other instance.

        `budget` also forgets the ledger's view of that subject's spend (spend or period edited).
        """
        self.cache.invalidate(kind, ident)
        if budget and ident is not None:
            await self.ledger.invalidate(f"{kind}:{ident}")
        if self.redis is not None:
            try:
                await self.redis.publish(self.channel, f"{kind}\x00{ident or ''}")
            except Exception:
                log.exception("could not publish a cache invalidation")

    async def _listen(self, pubsub: Any) -> None:
        while True:
            try:
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    kind, _, ident = message["data"].decode().partition("\x00")
                    self.cache.invalidate(kind, ident or None)
            except asyncio.CancelledError:
                await pubsub.aclose()
                raise
            except Exception:
                log.exception("cache invalidation listener failed; resubscribing")
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await pubsub.subscribe(self.channel)


def make_journal(url: str, settings: GeneralSettings) -> SpendJournal | None:
    """The spend journal for this process, or None when general_settings.spend_journal is false."""
    if not settings.spend_journal:
        return None
    url = normalize_url(url)
    directory = Path(settings.spend_journal_dir).expanduser() if settings.spend_journal_dir else None
    return SpendJournal(
        directory or default_directory(url),
        database_key(url),
        fsync_seconds=settings.spend_journal_fsync_ms / 1000,
    )


def _complete(row: dict[str, Any]) -> bool:
    """A journal row with every column the database requires (a bad row would block the writer)."""
    return all(row.get(name) is not None for name in _REQUIRED) and set(row) <= _COLUMNS
