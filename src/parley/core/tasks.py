"""Background work of one running gateway: spawned tasks, and startup and shutdown hooks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger("parley")

Hook = Callable[[], Awaitable[Any]]


class Tasks:
    def __init__(self) -> None:
        self._background: set[asyncio.Task[Any]] = set()
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []

    def on_startup(self, fn: Hook) -> None:
        self._startup.append(fn)

    def on_shutdown(self, fn: Hook) -> None:
        self._shutdown.append(fn)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` in the background, kept alive until done and awaited at shutdown."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

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
