"""What `parley serve` does between loading the config and printing the banner.

`check_gateway(config)` builds the gateway once, so a check only its parts make fails in one line;
`bind(host, port)` takes the port first (a busy port is one line, before any banner says
"listening"); `redis_notes(config)` are the lines about Redis an operator must see once: Redis
unreachable (the gateway serves, with per-process state, and reconnects), or several workers
without Redis (budgets and limits then hold per worker).
"""

from __future__ import annotations

import asyncio
import os
import socket

from parley.config import Config, ConfigError
from parley.gateway import build_gateway
from parley.store.deadline import within
from parley.store.preflight import StartupError
from parley.store.redis_link import RedisLink, link_from_config, safe_url

PROBE_SECONDS = 1.0


def check_gateway(config: Config) -> None:
    """Build the gateway once (nothing is started) so that what only its parts check, such as a
    provider's per-deployment switches, fails here in one line rather than in every worker."""
    try:
        build_gateway(config)
    except ConfigError as e:
        raise StartupError(f"config error: {config.path}: {e}") from None


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, inheritable by the workers; StartupError when taken."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        reason = e.strerror or str(e)
        raise StartupError(
            f"--port {port}: cannot listen on {host}:{port} ({reason}); stop what uses it or "
            f"pass another --port (make run PORT=N)"
        ) from None
    sock.set_inheritable(True)
    return sock


def redis_notes(config: Config, workers: int) -> list[str]:
    """Warnings about Redis for the startup output (none when all is well)."""
    link = link_from_config(config.redis, os.environ)
    if link is None:
        if workers > 1:
            return [
                f"warning: {workers} workers and no Redis: rate limits, budgets' in-flight holds and "
                "router cooldowns hold per worker; set router_settings.redis_url to share them"
            ]
        return []
    reason = asyncio.run(_probe(link))
    if reason is None:
        return []
    return [
        f"warning: Redis at {safe_url(link.url)} is unreachable ({reason}): serving with "
        "per-process limits, cooldowns and key cache; reconnecting in the background"
    ]


async def _probe(link: RedisLink) -> str | None:
    link.timeout = PROBE_SECONDS
    try:
        client = link.client  # (imports redis-py: not counted in the probe's time)
        async with within(PROBE_SECONDS):
            await client.ping()
    except Exception as e:
        return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    finally:
        await link.close()
    return None


__all__ = ["StartupError", "bind", "check_gateway", "redis_notes"]
