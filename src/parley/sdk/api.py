"""The public SDK: `parley.messages.create/acreate`, `parley.Router`.

    import parley
    msg = parley.messages.create(model="anthropic/claude-haiku-4-5", max_tokens=256,
                                 messages=[{"role": "user", "content": "Hello"}])
    print(msg.content[0].text)

`model` is `provider/name` (keys and bases from arguments or ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL,
OPENAI_API_KEY, OPENAI_BASE_URL), or a model name of a loaded config through `parley.Router`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from typing import Any

from parley.config import Config, build_config, load_config
from parley.sdk.core import (
    Engine,
    EventStream,
    adhoc_config,
    create_completion,
    create_message,
    split_options,
)

log = logging.getLogger("parley.sdk")


async def _adhoc(create, **kwargs: Any) -> Any:
    """One call on a throwaway engine for `provider/name` models (closed when the call is over)."""
    body, options = split_options(kwargs)
    engine = Engine(adhoc_config(str(body.get("model", "")), options))
    await engine.start()
    try:
        result = await create(engine.gateway, body, options.get("extra_headers") or {})
    except BaseException:
        await engine.close()
        raise
    if isinstance(result, dict):
        await engine.close()
        return result
    result.on_close.append(engine.close)  # the throwaway engine goes with the stream
    return result


async def _adhoc_message(**kwargs: Any) -> Any:
    return await _adhoc(create_message, **kwargs)


async def _adhoc_completion(**kwargs: Any) -> Any:
    return await _adhoc(create_completion, **kwargs)


def _run_sync(coro_factory, *args, **kwargs) -> Any:
    """Run an SDK coroutine from synchronous code; a stream becomes a blocking iterator."""
    loop = asyncio.new_event_loop()
    try:
        result = loop.run_until_complete(coro_factory(*args, **kwargs))
    except BaseException:
        loop.close()
        raise
    if isinstance(result, dict):
        loop.close()
        return result
    return _sync_iter(loop, result)


def _sync_iter(
    loop: asyncio.AbstractEventLoop, events: EventStream, close_loop: bool = True
) -> Iterator[Any]:
    """Iterate an async event stream from sync code; closes the stream (and a private loop) at the
    end or when the caller stops early."""
    try:
        while True:
            try:
                yield loop.run_until_complete(events.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(events.aclose())
        if close_loop:
            loop.close()


async def acompletion(**kwargs: Any) -> Any:
    """OpenAI Chat Completions arguments to any provider; `model` is `provider/name`."""
    return await _adhoc_completion(**kwargs)


def completion(**kwargs: Any) -> Any:
    """The synchronous `acompletion`; with `stream=True` a blocking iterator of chunks."""
    return _run_sync(_adhoc_completion, **kwargs)


class Messages:
    """`parley.messages`: the Anthropic Messages interface to any provider."""

    def __init__(self, router: Router | None = None) -> None:
        self._router = router

    async def acreate(self, **kwargs: Any) -> Any:
        if self._router is not None:
            return await self._router._message(**kwargs)
        return await _adhoc_message(**kwargs)

    def create(self, **kwargs: Any) -> Any:
        if self._router is not None:
            return self._router._sync(self._router._message, **kwargs)
        return _run_sync(_adhoc_message, **kwargs)


class Router:
    """Several deployments from a config (dict, path or Config), with the server's routing.

    router = parley.Router({"model_list": [...], "router_settings": {...}})
    msg = await router.messages.acreate(model="claude-sonnet-4-5", ...)
    await router.aclose()
    """

    def __init__(self, config: Config | dict | str) -> None:
        if isinstance(config, str):
            config = load_config(config)
        elif isinstance(config, dict):
            config = build_config(config, "Router")
        for line in config.ignored:
            log.warning("ignored: %s", line)
        os.environ.update(config.environment)  # the config's environment_variables, as LiteLLM sets them
        self._engine = Engine(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.messages = Messages(self)

    async def _message(self, **kwargs: Any) -> Any:
        return await self._call(create_message, kwargs)

    async def acompletion(self, **kwargs: Any) -> Any:
        return await self._call(create_completion, kwargs)

    def completion(self, **kwargs: Any) -> Any:
        return self._sync(self.acompletion, **kwargs)

    async def _call(self, create, kwargs: dict[str, Any]) -> Any:
        body, options = split_options(kwargs)
        await self._engine.start()
        return await create(self._engine.gateway, body, options.get("extra_headers") or {})

    def _sync(self, fn, **kwargs: Any) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        result = self._loop.run_until_complete(fn(**kwargs))
        if isinstance(result, dict):
            return result
        return _sync_iter(self._loop, result, close_loop=False)  # the Router keeps its loop

    async def aclose(self) -> None:
        await self._engine.close()

    def close(self) -> None:
        if self._loop is not None:
            self._loop.run_until_complete(self._engine.close())
            self._loop.close()
            self._loop = None


messages = Messages()
