"""`general_settings.database_url` read as users write it (SQLAlchemy, libpq, Prisma, LiteLLM).

`database_target(url)` returns the engine URL and options, or a ConfigError naming what to write
instead: only SQLite and PostgreSQL are supported; Postgres query parameters are translated
(`sslmode` -> asyncpg `ssl`, Prisma's `connection_limit`/`pool_timeout` -> the pool, `schema` ->
`search_path`, `application_name`, `connect_timeout`) and any other is refused.
`sqlite:///path` is SQLAlchemy's relative path, but a path whose top folder exists only at the
root (`sqlite:///tmp/x.db`) is the absolute path meant; `sqlite:////abs` is always absolute.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from parley.config.fields import ConfigError

DEFAULT_SQLITE = "sqlite+aiosqlite:///parley.db"
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
PG_PARAMS = ("sslmode", "connection_limit", "pool_timeout", "schema", "application_name", "connect_timeout")


@dataclass(frozen=True)
class DatabaseTarget:
    url: str  # SQLAlchemy async URL, without query parameters for Postgres
    backend: str  # sqlite | postgresql
    connect_args: dict[str, Any] = field(default_factory=dict)
    pool_size: int | None = None  # from connection_limit
    pool_timeout: float | None = None  # from pool_timeout

    @property
    def sqlite_path(self) -> str | None:
        return self.url.split(":///", 1)[1] if self.backend == "sqlite" else None


def database_target(url: str, where: str = "general_settings.database_url") -> DatabaseTarget:
    """The engine URL and options for what was written in database_url; ConfigError if unusable."""
    url = url.strip()
    if url in ("sqlite", "sqlite://", "sqlite:///"):
        return DatabaseTarget(DEFAULT_SQLITE, "sqlite")
    if "://" not in url:  # a bare file path
        return DatabaseTarget("sqlite+aiosqlite:///" + url, "sqlite")
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        return DatabaseTarget("sqlite+aiosqlite:///" + _sqlite_path(url.split("://", 1)[1]), "sqlite")
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        return _postgres(url, where)
    raise ConfigError(
        f"{where}: unsupported database {scheme!r}: use sqlite (sqlite:///path/parley.db) or "
        "postgresql (postgresql://user:password@host:5432/db)"
    )


def _sqlite_path(rest: str) -> str:
    path = rest[1:] if rest.startswith("/") else rest  # sqlite:///x -> x, sqlite:////x -> /x
    if path.startswith("/") or not path or "/" not in path:
        return path
    top = path.split("/", 1)[0]
    if not os.path.exists(top) and os.path.isdir("/" + top):
        return "/" + path
    return path


def _postgres(url: str, where: str) -> DatabaseTarget:
    parts = urlsplit(url)
    connect_args: dict[str, Any] = {}
    settings: dict[str, str] = {}
    pool_size: int | None = None
    pool_timeout: float | None = None
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "sslmode":
            if value not in SSL_MODES:
                raise ConfigError(f"{where}: sslmode={value!r}: use one of {', '.join(SSL_MODES)}")
            connect_args["ssl"] = value
        elif name == "connection_limit":
            pool_size = int(_number(name, value, where))
        elif name == "pool_timeout":
            pool_timeout = _number(name, value, where)
        elif name == "connect_timeout":
            connect_args["timeout"] = _number(name, value, where)
        elif name == "schema":
            settings["search_path"] = value
        elif name == "application_name":
            settings["application_name"] = value
        else:
            raise ConfigError(
                f"{where}: query parameter {name!r} is not supported; remove it "
                f"(supported: {', '.join(PG_PARAMS)})"
            )
    if settings:
        connect_args["server_settings"] = settings
    base = urlunsplit(("postgresql+asyncpg", parts.netloc, parts.path, "", ""))
    return DatabaseTarget(base, "postgresql", connect_args, pool_size, pool_timeout)


def _number(name: str, value: str, where: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if number <= 0:
        raise ConfigError(f"{where}: {name}={value!r}: must be a positive number")
    return number
