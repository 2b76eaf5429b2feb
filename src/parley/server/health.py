"""`/health/readiness`: can this instance serve, and with what missing?

`healthy` when every configured dependency answers; `degraded` (still status 200: the gateway
serves, with per-process limits and cooldowns, or spend journaled on local disk) with a reason
per dependency that does not. Liveness stays a plain "the process answers".
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import Response

from parley.admin.common import JSONBytes
from parley.core.context import new_request_id
from parley.gateway import Gateway
from parley.store.redis_link import RedisUnavailable

PROBE_SECONDS = 1.0


class Readiness:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def check(self, request: Request) -> Response:
        problems = {
            name: reason
            for name, reason in (("redis", await self._redis()), ("database", await self._database()))
            if reason is not None
        }
        body: dict[str, Any] = {"status": "degraded" if problems else "healthy"}
        if problems:
            body["degraded"] = problems
        return JSONBytes(body, headers={"request-id": new_request_id()})

    async def _redis(self) -> str | None:
        link = self.gateway.redis
        if link is None:
            return None
        try:
            await link.run(lambda client: client.ping())
        except RedisUnavailable:
            return (
                f"unreachable ({link.last_error or 'down'}): rate limits, cooldowns and the key "
                "cache are per process until it is back"
            )
        return None

    async def _database(self) -> str | None:
        store = self.gateway.store
        if store is None:
            return None
        try:
            async with asyncio.timeout(PROBE_SECONDS), store.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as e:
            return f"unreachable ({type(e).__name__}): spend is kept in the local journal until it is back"
        return None
