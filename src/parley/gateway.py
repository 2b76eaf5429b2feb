"""The gateway object: all state of one running parley, independent of the HTTP server."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Coroutine

from parley.config import Config
from parley.core.deployment import Deployment
from parley.core.context import RequestContext
from parley.transport.http import HttpClient
from parley.filters.access_log import AccessLog
from parley.pipeline.filter import Authenticator, Policy
from parley.providers.anthropic import AnthropicProvider
from parley.core.stream import Provider
from parley.providers.mock import MockProvider
from parley.providers.openai import OpenAIProvider
from parley.router.run import Router
from parley.router.table import ModelTable

log = logging.getLogger("parley")


class Gateway:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.table = ModelTable(config.deployments, config.model_group_alias)
        self.router = Router(self.table)
        self.http = HttpClient()
        self.providers: dict[str, Provider] = {
            "anthropic": AnthropicProvider(self.http),
            "mock": MockProvider(),
            "openai": OpenAIProvider(self.http),
        }
        # (client API, backend API) -> translator bridge, e.g. ("anthropic", "openai")
        self.bridges: dict[tuple[str, str], Any] = {}
        self.auth = Authenticator(config.master_key)
        # callables gateway -> list of Starlette routes, added by features (admin API, pass-through)
        self.route_extensions: list[Any] = []
        self.policies: list[Policy] = [AccessLog()]
        self.redis: Any = None  # a RedisLink when Redis is configured (parley.store.redis_link)
        self.response_cache: Any = None  # parley.filters.cache.hook.ResponseCache when caching is on
        self.ping_interval = float(config.general_settings.get("stream_ping_interval", 15.0))
        self._background: set[asyncio.Task] = set()
        self._startup: list[Any] = []
        self._shutdown: list[Any] = []

    def provider_for(self, deployment: Deployment) -> Provider:
        return self.providers[deployment.api]

    def on_startup(self, fn) -> None:
        self._startup.append(fn)

    def on_shutdown(self, fn) -> None:
        self._shutdown.append(fn)

    async def start(self) -> None:
        for fn in self._startup:
            await fn()

    async def stop(self) -> None:
        if self._background:
            await asyncio.wait(self._background, timeout=10)
        for fn in reversed(self._shutdown):
            try:
                await fn()
            except Exception:  # keep closing the rest
                log.exception("shutdown hook failed")
        await self.http.close()

    async def before_call(self, ctx: RequestContext, body: dict[str, Any] | None) -> None:
        for policy in self.policies:
            await policy.before_call(ctx, body)

    def finish(self, ctx: RequestContext) -> None:
        """Run every after_call hook once; never raises."""
        if ctx.extra.get("_finished"):
            return
        ctx.extra["_finished"] = True
        if ctx.ended_at is None:
            ctx.ended_at = time.perf_counter()
        for policy in self.policies:
            try:
                policy.after_call(ctx)
            except Exception:
                log.exception("after_call hook %s failed", type(policy).__name__)

    def spawn(self, coro: Coroutine) -> asyncio.Task:
        """Run `coro` in the background, kept alive until done and awaited at shutdown."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task
