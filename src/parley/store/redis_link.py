"""One shared Redis connection for the state parley spreads across workers and instances.

Router cooldowns, rate-limit counters and the response cache use it when Redis is configured
(`REDIS_URL`, or `router_settings.redis_url` / `redis_host` + `redis_port` + `redis_password`).
Every call is bounded by a short timeout (a late event loop tolerated: `parley.store.deadline`),
waiting for a free connection included (a blocking pool of `max_connections`, sized to the
gateway's concurrency: a full pool is treated like a slow Redis, never an error to the client).
When Redis fails, the link is marked down with one loud log line; callers get `RedisUnavailable`
and fall back to in-process state until `retry_interval` has passed (doubling from the fourth
failed attempt on, up to 30 s), then the next call tries again (and logs the recovery).
`last_error` says why it is down, for /health/readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from parley.config import RedisSettings
from parley.store.deadline import within
from parley.store.redis_errors import RedisUnavailable
from parley.store.resp import ReplyError, RespConnection, connect, lean_params

if TYPE_CHECKING:  # redis-py is imported when a link first connects, not by every gateway
    import redis.asyncio as aioredis

    from parley.store.lua_batch import SettleBatch

log = logging.getLogger("parley.redis")

DEFAULT_PREFIX = "parley"
MAX_RETRY_INTERVAL = 30.0  # the longest wait between reconnection attempts
DEFAULT_MAX_CONNECTIONS = RedisSettings.max_connections


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script, called by its SHA1 (EVALSHA) and loaded when Redis does not know it."""

    lua: str
    sha: str


class RedisLink:
    def __init__(
        self,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        *,
        timeout: float = 0.5,
        retry_interval: float = 2.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        lease_ms: int = 0,
        lease_max_requests: int = 256,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self.retry_interval = retry_interval
        self.max_connections = max_connections
        self.lease_ms = lease_ms  # quota leases' lifetime (`parley.store.lease`); 0: none
        self.lease_max_requests = lease_max_requests
        self.closers: list[Callable[[], None]] = []  # run at close, before the last settlements go
        self._client: aioredis.Redis | None = None
        self._down_since: float | None = None
        self._retry_at = 0.0
        self.errors = 0  # failed calls since start (read by the metrics)
        self._failures = 0  # consecutive failed attempts: the wait before the next one doubles
        self.last_error: str | None = None  # why Redis is down (None while it is up)
        # what a failed call raises: the lean connection's errors, + RedisError once redis-py is in
        self._failures_of: tuple[type[Exception], ...] = (ReplyError, OSError, TimeoutError)
        self._later: SettleBatch | None = None
        self._lean = lean_params(url)  # None: script calls go through redis-py too
        self._conn: RespConnection | None = None
        self._conn_loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Task[RespConnection] | None = None

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import RedisError

            self._failures_of = (RedisError, ReplyError, OSError, TimeoutError)
            # `run` bounds each call (a late loop tolerated: `parley.store.deadline`); redis-py's
            # own bounds are a backstop, longer, so a late loop does not trip them either
            backstop = self.timeout * 4
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=self.max_connections,
                timeout=backstop,  # waiting for a free connection
                socket_timeout=backstop,
                socket_connect_timeout=backstop,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
            )
            self._client = aioredis.Redis(connection_pool=pool)
        return self._client

    @property
    def up(self) -> bool:
        """False while a recent failure says Redis is down (no call is attempted then)."""
        return self._down_since is None or time.monotonic() >= self._retry_at

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @property
    def later(self) -> SettleBatch:
        """Steps sent together after the reply (settlements), one call for many requests."""
        if self._later is None:
            from parley.store.lua_batch import SettleBatch  # lazily: most requests never settle

            self._later = SettleBatch(self)
        return self._later

    def script(self, lua: str) -> Script:
        """A script for `eval` (EVALSHA, loaded on first use and after a Redis restart)."""
        return Script(lua, hashlib.sha1(lua.encode()).hexdigest())

    async def run(self, fn: Callable[[aioredis.Redis], Awaitable[Any]]) -> Any:
        """`await fn(client)` within the timeout; RedisUnavailable if Redis is down or fails."""
        if not self.up:
            raise RedisUnavailable(self.url)
        client = self.client  # (redis-py is imported on first use: not inside the timeout)
        try:
            async with within(self.timeout):
                result = await fn(client)
        except self._failures_of as e:
            self._failed(e)
            raise RedisUnavailable(str(e)) from e
        self._answered()
        return result

    async def eval(
        self, script: Script, keys: Sequence[str], args: Sequence[str | bytes | int | float]
    ) -> Any:
        """Run `script` within the timeout, on the lean pipelined connection (`parley.store.resp`)
        when the URL allows; RedisUnavailable if Redis is down or fails, as for `run`."""
        return await self._call(["EVALSHA", script.sha, len(keys), *keys, *args], script)

    async def command(self, *args: str | bytes | int | float) -> Any:
        """One command (GET, SET ...) as `eval` sends a script: on the lean connection when the
        URL allows, within the timeout; RedisUnavailable if Redis is down or fails."""
        return await self._call(list(args), None)

    async def _call(self, command: list[Any], script: Script | None) -> Any:
        if not self.up:
            raise RedisUnavailable(self.url)
        try:
            if self._lean is None:
                client = self.client
                async with within(self.timeout):
                    result = await self._call_client(client, command, script)
            else:
                result = await self._call_lean(command, script)
        except self._failures_of as e:
            self._failed(e)
            raise RedisUnavailable(str(e)) from e
        self._answered()
        return result

    async def _call_client(self, client: aioredis.Redis, command: list[Any], script: Script | None) -> Any:
        from redis.exceptions import NoScriptError

        try:
            return await client.execute_command(*command)
        except NoScriptError:
            assert script is not None
            await client.script_load(script.lua)
            return await client.execute_command(*command)

    async def _call_lean(self, command: list[Any], script: Script | None) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        conn = self._conn
        if conn is None or conn.closed or self._conn_loop is not loop:
            async with within(self.timeout):
                conn = await self._connection()
            deadline = loop.time() + self.timeout  # (connected: the command gets its own time)
        reply = await conn.send(command, deadline)
        if script is not None and isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT"):
            await conn.send(["SCRIPT", "LOAD", script.lua], deadline)  # (Redis restarted, or first use)
            reply = await conn.send(command, deadline)
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def _connection(self) -> RespConnection:
        """The lean connection, opened (once, whoever asks meanwhile) when there is none."""
        loop = asyncio.get_running_loop()
        conn = self._conn
        if conn is not None and not conn.closed and self._conn_loop is loop:
            return conn
        task = self._connecting
        if task is None or task.done() or task.get_loop() is not loop:
            assert self._lean is not None
            task = self._connecting = loop.create_task(connect(self._lean))
            task.add_done_callback(_retrieved)
        self._conn = await asyncio.shield(task)  # a caller that times out leaves it to the others
        self._conn_loop = loop
        return self._conn

    def _failed(self, error: Exception) -> None:
        self.errors += 1
        self._mark_down(error)

    def _answered(self) -> None:
        if self._down_since is not None:
            log.warning(
                "Redis at %s is reachable again after %.1fs: shared state restored",
                safe_url(self.url),
                time.monotonic() - self._down_since,
            )
            self._down_since = None
        self._failures = 0
        self.last_error = None

    def _mark_down(self, error: Exception) -> None:
        now = time.monotonic()
        self.last_error = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        if self._down_since is None:
            self._down_since = now
            log.error(
                "Redis at %s failed (%s: %s): falling back to IN-PROCESS rate limits, "
                "cooldowns and cache until it is back; reconnecting with backoff from %.0fs to %.0fs",
                safe_url(self.url),
                type(error).__name__,
                error,
                self.retry_interval,
                MAX_RETRY_INTERVAL,
            )
        # a blip is retried every retry_interval; from the fourth failed attempt on the wait doubles
        wait = min(MAX_RETRY_INTERVAL, self.retry_interval * 2 ** min(max(0, self._failures - 2), 8))
        self._failures += 1
        self._retry_at = now + wait

    async def close(self) -> None:
        for close in self.closers:  # (leases given back: their steps join the last settlements)
            close()
        if self._later is not None:
            with contextlib.suppress(RedisUnavailable):
                await self._later.drain()
        if self._conn is not None:
            self._conn.close()
        if self._client is not None:
            with contextlib.suppress(Exception):  # closing a dead connection may fail; nothing to do
                await self._client.aclose()


def _retrieved(task: asyncio.Task[Any]) -> None:
    """A connection attempt's failure is reported to its callers; none is left unread."""
    if not task.cancelled():
        task.exception()


def redis_url_from(settings: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    """The Redis URL from router_settings (redis_url, or host/port/password) or REDIS_URL."""
    url = settings.get("redis_url")
    if url:
        return str(url)
    host = settings.get("redis_host")
    if host:
        password = settings.get("redis_password")
        auth = f":{password}@" if password else ""
        return f"redis://{auth}{host}:{int(settings.get('redis_port') or 6379)}"
    return env.get("REDIS_URL") or None


def safe_url(url: str) -> str:
    """The URL without a password, for logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def link_from_config(settings: RedisSettings, env: Mapping[str, str]) -> RedisLink | None:
    """The gateway's one Redis link, or None when Redis is not configured."""
    url = settings.url or env.get("REDIS_URL")
    if not url:
        return None
    prefix = settings.key_prefix or env.get("PARLEY_REDIS_PREFIX") or DEFAULT_PREFIX
    return RedisLink(
        url,
        prefix,
        timeout=settings.timeout,
        max_connections=settings.max_connections,
        lease_ms=settings.lease_ms,
        lease_max_requests=settings.lease_max_requests,
    )
