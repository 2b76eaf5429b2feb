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
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from parley.config import Config, GeneralSettings
from parley.core.tasks import Tasks
from parley.spend.journal import SpendJournal, claim_orphans, database_key, default_directory
from parley.spend.ledger import LocalLedger, RedisLedger
from parley.spend.pricing import PriceTable
from parley.spend.rows import from_mapping
from parley.spend.writer import SpendWriter
from parley.store.cache import RecordCache
from parley.store.db import make_engine, migrate, normalize_url
from parley.store.deadline import within
from parley.store.redis_link import RedisLink, RedisUnavailable
from parley.store.tables import spend_logs

_COLUMNS = frozenset(str(c.name) for c in spend_logs.c)
_REQUIRED = tuple(str(c.name) for c in spend_logs.c if not c.nullable and c.server_default is None)

LONE_KEY_CACHE_TTL = 1.0  # seconds a key record is trusted without Redis to announce changes

log = logging.getLogger("parley.store")


HEARTBEAT_SECONDS = 1.0  # how often an instance refreshes its heartbeat (TTL: 5 beats)
LISTEN_BACKOFF = (0.5, 5.0)  # the invalidation listener's first and longest wait between attempts


class StoreService:
    def __init__(self, config: Config, link: RedisLink | None, tasks: Tasks) -> None:
        settings = config.general
        self.config = config
        self.settings = settings
        assert settings.database_url is not None
        self.url = settings.database_url
        self.engine = make_engine(self.url, settings)
        # Without Redis no message tells other workers and instances of a revoked key: their cached
        # records then live at most a second, so a revocation reaches all of them within one.
        ttl = settings.key_cache_ttl if link is not None else min(settings.key_cache_ttl, LONE_KEY_CACHE_TTL)
        self.cache = RecordCache(self.engine, ttl=ttl)
        self.journal = make_journal(self.url, settings)
        self.writer = SpendWriter(
            self.engine,
            interval=settings.spend_flush_interval,
            batch_size=settings.spend_batch_size,
            journal=self.journal,
        )
        self.prices = PriceTable()
        self.link = link
        self.instance = uuid.uuid4().hex[:16]
        local = LocalLedger(
            self.engine, self._pending, tasks.spawn, refresh_seconds=settings.budget_refresh_seconds
        )
        self.ledger: LocalLedger | RedisLedger = local
        if link is not None:
            self.ledger = RedisLedger(
                link,
                local,
                self.instance,
                heartbeat_ttl=5 * HEARTBEAT_SECONDS,
                heartbeat_every=HEARTBEAT_SECONDS,
            )
        self._loops: list[asyncio.Task[None]] = []

    def _pending(self, key: str) -> tuple[float, float]:
        return self.writer.queued_total.get(key, 0.0), self.writer.committed_total.get(key, 0.0)

    @property
    def channel(self) -> str:
        return self.link.key("invalidate") if self.link is not None else "parley:invalidate"

    async def start(self) -> None:
        """Open the database; Redis work (heartbeat, invalidation listener) runs in the background,
        so the gateway starts and serves while Redis is unreachable."""
        await migrate(self.engine)
        self.writer.start()
        if self.journal is not None:
            await asyncio.to_thread(self.journal.open)
            await self.replay_journals()
        if self.link is not None:
            loop = asyncio.get_running_loop()
            self._loops = [loop.create_task(self._heartbeat()), loop.create_task(self._listen())]

    async def stop(self) -> None:
        await self.writer.stop()
        if self.journal is not None:
            await asyncio.to_thread(self.journal.close)
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
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
            self.writer.enqueue(from_mapping(row))
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
        if self.link is not None:
            message = f"{kind}\x00{ident or ''}"
            try:
                await self.link.run(lambda c: c.publish(self.channel, message))
            except RedisUnavailable:
                log.warning(
                    "could not publish a cache invalidation (Redis down): other instances "
                    "see the change when their key cache expires"
                )

    async def _heartbeat(self) -> None:
        """Keep this instance's budget holds alive in Redis (and retry missed settlements)."""
        assert isinstance(self.ledger, RedisLedger)
        while True:
            with contextlib.suppress(RedisUnavailable):
                await self.ledger.beat()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _listen(self) -> None:
        """Apply other instances' invalidations; resubscribe with backoff while Redis is away,
        logging once per change of state."""
        assert self.link is not None
        from redis.exceptions import RedisError  # only with Redis configured

        wait, connected = LISTEN_BACKOFF[0], None
        while True:
            pubsub = self.link.client.pubsub()
            try:
                await _bounded(self.link.timeout, pubsub.subscribe(self.channel))
                if connected is not True:
                    if connected is False:  # messages may have been missed: forget every record
                        self.cache.invalidate("all", None)
                    self.cache.ttl = self.settings.key_cache_ttl
                    log.info("cache invalidation listener subscribed to %s", self.channel)
                wait, connected = LISTEN_BACKOFF[0], True
                await self._receive(pubsub)
            except (RedisError, OSError, TimeoutError) as e:
                if connected is not False:
                    # no one can tell this process of a revoked key now: trust records 1 s only
                    self.cache.ttl = min(self.settings.key_cache_ttl, LONE_KEY_CACHE_TTL)
                    self.cache.invalidate("all", None)
                    log.warning(
                        "cache invalidation listener lost Redis (%s); key records are re-read every "
                        "%.0fs until it is back; retrying with backoff",
                        e,
                        self.cache.ttl,
                    )
                connected = False
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(wait)
            wait = min(wait * 2, LISTEN_BACKOFF[1])

    async def _receive(self, pubsub: Any) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message.get("type") == "message":
                kind, _, ident = message["data"].decode().partition("\x00")
                self.cache.invalidate(kind, ident or None)


async def _bounded(seconds: float, call: Awaitable[Any]) -> Any:
    async with within(seconds):  # (a late loop is not a lost Redis: `parley.store.deadline`)
        return await call


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
