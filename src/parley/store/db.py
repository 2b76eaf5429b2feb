"""The async database: engine from the configured URL, and schema migration at startup.

`sqlite` (or a path ending in .db) means an embedded SQLite file through aiosqlite (default
`parley.db`); `postgresql://…` means Postgres through asyncpg with a bounded connection pool.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from parley.config import GeneralSettings
from parley.config.database import DEFAULT_SQLITE, database_target

log = logging.getLogger("parley.store")

__all__ = ["DEFAULT_SQLITE", "describe", "make_engine", "migrate", "normalize_url"]
_PG_LOCK_ID = 7314150926  # advisory lock held while migrating


def normalize_url(url: str) -> str:
    """The SQLAlchemy async URL for what a user wrote in database_url / DATABASE_URL."""
    return database_target(url).url


def describe(url: str) -> str:
    """A printable location: file path for SQLite, host/db without password for Postgres."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite file {parsed.database}"
    return f"{parsed.get_backend_name()} {parsed.render_as_string(hide_password=True)}"


def make_engine(url: str, settings: GeneralSettings | Mapping[str, Any] | None = None) -> AsyncEngine:
    """The engine for `url`; Postgres pool sizes from `settings` (a general_settings mapping works too)."""
    if not isinstance(settings, GeneralSettings):
        settings = GeneralSettings.from_config(settings or {}, "general_settings", {})
    target = database_target(url)
    url = target.url
    if target.backend == "sqlite":
        create_private_file(make_url(url).database)
        # Few cached statements: spend batches of every size are distinct multi-row INSERTs, and
        # sqlite3's default cache of 128 prepared statements each holding one grew RSS by ~2 KB
        # per request until it filled (measured: 100 MB -> 180 MB over 38k requests).
        engine = create_async_engine(url, connect_args={"timeout": 30, "cached_statements": 16})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_async_engine(
        url,
        connect_args=target.connect_args,
        pool_size=target.pool_size or settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_timeout=target.pool_timeout or settings.database_pool_timeout,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


def create_private_file(path: str | None) -> None:
    """Create the SQLite file owner-only (0600) before SQLite does (it would use 0644 less the
    umask): it holds key hashes, spend and metadata. SQLite gives its -wal and -shm files the
    database file's mode. An existing file is left as it is; in-memory databases have no file."""
    if not path or path == ":memory:" or path.startswith("file:") or os.path.exists(path):
        return
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:  # another worker made it first
        pass
    except OSError as e:  # e.g. the folder does not exist: SQLite will report it on connect
        log.debug("could not pre-create %s: %s", path, e)


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", "parley.store:migrations")
    return cfg


async def migrate(engine: AsyncEngine, attempts: int = 5) -> None:
    """Upgrade the schema to the newest revision (idempotent; safe with several workers)."""
    for attempt in range(attempts):
        try:
            async with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    await conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_LOCK_ID})"))
                await conn.run_sync(_upgrade)
            return
        except Exception as e:  # another worker migrating the same SQLite file at once
            if attempt == attempts - 1:
                raise
            log.warning("migration attempt %d failed (%s); retrying", attempt + 1, e)
            await asyncio.sleep(0.2 * (attempt + 1))


def _upgrade(sync_conn) -> None:
    cfg = _alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


def head_revision() -> str:
    """The newest migration's revision (the chain has exactly one head)."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        try:
            row = (await conn.execute(text("SELECT version_num FROM alembic_version"))).first()
        except Exception:
            return None
    return row[0] if row else None
