"""One shared Redis connection for the state parley spreads across workers and instances.

Router cooldowns, rate-limit counters and the response cache use it when Redis is configured
(`REDIS_URL`, or `router_settings.redis_url` / `redis_host` + `redis_port` + `redis_password`).
Every call is bounded by a short timeout, waiting for a free connection included (a blocking pool
of `max_connections`, sized to the gateway's concurrency: a full pool is treated like a slow Redis,
never an error to the client). When Redis fails, the link is marked down with one loud
log line; callers get `RedisUnavailable` and fall back to in-process state until `retry_interval`
has passed (doubling from the fourth failed attempt on, up to 30 s), then the next call tries again (and
logs the recovery). `last_error` says why it is down, for /health/readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from parley.config import RedisSettings

if TYPE_CHECKING:  # redis-py is imported when a link first connects, not by every gateway
    import redis.asyncio as aioredis

log = logging.getLogger("parley.redis")

DEFAULT_PREFIX = "parley"
MAX_RETRY_INTERVAL = 30.0  # the longest wait between reconnection attempts
DEFAULT_MAX_CONNECTIONS = RedisSettings.max_connections


class RedisUnavailable(Exception):
    """Redis is not configured or currently down: use local state."""


class RedisLink:
    def __init__(
        self,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        *,
        timeout: float = 0.5,
        retry_interval: float = 2.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self.retry_interval = retry_interval
        self.max_connections = max_connections
        self._client: aioredis.Redis | None = None
        self._down_since: float | None = None
        self._retry_at = 0.0
        self.errors = 0  # failed calls since start (read by the metrics)
        self._failures = 0  # consecutive failed attempts: the wait before the next one doubles
        self.last_error: str | None = None  # why Redis is down (None while it is up)
        self._failures_of: tuple[type[Exception], ...] = (OSError, TimeoutError)  # + RedisError

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import RedisError

            self._failures_of = (RedisError, OSError, TimeoutError)
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=self.max_connections,
                timeout=self.timeout,  # waiting for a free connection: as long as a call may take
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
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

    def script(self, lua: str) -> Any:
        """A registered Lua script (EVALSHA, loaded on first use)."""
        return self.client.register_script(lua)

    async def run(self, fn: Callable[[aioredis.Redis], Awaitable[Any]]) -> Any:
        """`await fn(client)` within the timeout; RedisUnavailable if Redis is down or fails."""
        if not self.up:
            raise RedisUnavailable(self.url)
        try:
            async with asyncio.timeout(self.timeout):
                result = await fn(self.client)
        except self._failures_of as e:
            self.errors += 1
            self._mark_down(e)
            raise RedisUnavailable(str(e)) from e
        if self._down_since is not None:
            log.warning(
                "Redis at %s is reachable again after %.1fs: shared state restored",
                safe_url(self.url),
                time.monotonic() - self._down_since,
            )
            self._down_since = None
        self._failures = 0
        self.last_error = None
        return result

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
        if self._client is not None:
            with contextlib.suppress(Exception):  # closing a dead connection may fail; nothing to do
                await self._client.aclose()


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
    return RedisLink(url, prefix, timeout=settings.timeout, max_connections=settings.max_connections)
