"""Checks the CLI runs before it binds the port: is the database there, writable and migrated?

Each failure is one `StartupError` line naming the setting and what to do, instead of the
driver's traceback from inside a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sqlite3

from sqlalchemy.engine import make_url

from parley.config import GeneralSettings
from parley.config.database import database_target
from parley.store.db import create_private_file, make_engine, migrate

CONNECT_SECONDS = 10.0


class StartupError(Exception):
    """The gateway cannot start; the message is one line saying what to do."""


def check_database(settings: GeneralSettings, setting: str) -> None:
    """Open, and migrate, the configured database; StartupError with the fix when that fails."""
    url = settings.database_url
    if not url:
        return
    target = database_target(url, setting)
    if target.sqlite_path is not None:
        _check_sqlite_folder(target.sqlite_path, setting)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # no migration chatter before the banner
    try:
        asyncio.run(_open_and_migrate(url, settings))
    except Exception as e:
        raise StartupError(f"{setting}: {explain(e, url)}") from None


async def _open_and_migrate(url: str, settings: GeneralSettings) -> None:
    engine = make_engine(url, settings)
    try:
        async with asyncio.timeout(CONNECT_SECONDS):
            await migrate(engine, attempts=1)
    finally:
        await engine.dispose()


def _check_sqlite_folder(path: str, setting: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise StartupError(
            f"{setting}: folder {folder} does not exist (SQLite file {path}); create it or "
            "point database_url elsewhere (sqlite:////absolute/path/parley.db)"
        )
    target = path if os.path.exists(path) else folder
    problem = None if os.access(target, os.W_OK) else "permission denied"
    if problem is None:
        existed = os.path.exists(path)
        create_private_file(path)  # 0600 before sqlite3 would make it 0644
        try:
            with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn:
                conn.execute("BEGIN IMMEDIATE")  # takes the write lock: fails when read-only
                conn.rollback()
        except sqlite3.Error as e:
            problem = str(e)
            if not existed:
                with contextlib.suppress(OSError):
                    os.unlink(path)
    if problem is not None:
        raise StartupError(
            f"{setting}: cannot write the SQLite file {path} as uid {os.getuid()} ({problem}); "
            "fix the permissions of the file and its folder or point database_url at a writable place"
        )


def explain(error: BaseException, url: str) -> str:
    """One line for why the database at `url` could not be used."""
    parsed = make_url(database_target(url).url)
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    cause = _root(error)
    name = type(cause).__name__
    if isinstance(cause, (ConnectionRefusedError, socket.gaierror)) or "Connect call failed" in str(cause):
        return f"cannot reach PostgreSQL at {where} ({cause}); start it or fix the host and port"
    if isinstance(cause, TimeoutError):
        return f"no answer from the database at {where} within {CONNECT_SECONDS:.0f}s; check it is up"
    if name == "InvalidCatalogNameError":
        return (
            f"PostgreSQL database {parsed.database!r} does not exist on {where}; create it "
            f"(createdb {parsed.database}) or fix the name"
        )
    if name in ("InvalidPasswordError", "InvalidAuthorizationSpecificationError"):
        return f"PostgreSQL at {where} refused user {parsed.username!r} ({cause}); fix the user or password"
    if "rejected SSL upgrade" in str(cause):
        return f"PostgreSQL at {where} does not offer TLS; use sslmode=disable or prefer, or enable TLS there"
    if "readonly" in str(cause) or "read-only" in str(cause):
        return f"SQLite file {parsed.database} is read-only for this user; fix its permissions"
    if "unable to open database file" in str(cause):
        return f"cannot open SQLite file {parsed.database}; check the folder exists and is writable"
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"the database failed at startup ({name}: {first})"


def _root(error: BaseException) -> BaseException:
    """The driver's own exception under SQLAlchemy's wrappers."""
    seen = error
    while True:
        nxt = getattr(seen, "orig", None) or seen.__cause__ or seen.__context__
        if nxt is None or nxt is seen:
            return seen
        seen = nxt
