"""The async database: engine from the configured URL, and schema migration at startup.

`sqlite` (or a path ending in .db) means an embedded SQLite file through aiosqlite (default
`parley.db`); `postgresql://…` means Postgres through asyncpg with a bounded connection pool.
A database already at the newest revision is left alone without importing Alembic (its
modules, Mako's and Pygments' cost a worker ~8 MB it would keep for its whole life).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from parley.config import GeneralSettings
from parley.config.database import DEFAULT_SQLITE, database_target

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

log = logging.getLogger("parley.store")

__all__ = ["DEFAULT_SQLITE", "describe", "make_engine", "migrate", "normalize_url"]
_PG_LOCK_ID = 7314150926  # advisory lock held while migrating
_VERSIONS = Path(__file__).parent / "migrations" / "versions"
_REVISION_LINE = re.compile(r'^(down_revision|revision)\s*(?::[^=\n]*)?=\s*(?:"([^"]+)"|None)', re.M)


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
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", "parley.store:migrations")
    return cfg


async def migrate(engine: AsyncEngine, attempts: int = 5) -> None:
    """Upgrade the schema to the newest revision (idempotent; safe with several workers)."""
    head = script_head()
    if head is not None and await current_revision(engine) == head:
        return  # nothing to do: Alembic is not even imported
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
    from alembic import command

    cfg = _alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


def script_head() -> str | None:
    """The newest revision, read from the migration files' `revision` / `down_revision` lines
    without Alembic; None when that is not one clear head (Alembic then decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in _VERSIONS.glob("*.py"):
        for kind, value in _REVISION_LINE.findall(path.read_text(encoding="utf-8")):
            (revisions if kind == "revision" else parents).add(value)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def head_revision() -> str:
    """The newest migration's revision (the chain has exactly one head)."""
    from alembic.script import ScriptDirectory

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
