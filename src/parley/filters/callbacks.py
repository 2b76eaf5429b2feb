"""Custom logging callbacks (LiteLLM's `callbacks: ["module.attr"]`): Python objects told about each
finished request, off the request path.

`on_done` only builds a typed `CallRecord` and puts it on each callback's bounded queue (full: the
record is dropped and counted, never waited for). Each callback has its own background task:
LiteLLM's `CustomLogger` methods are used, `async_log_success_event` / `async_log_failure_event`
(awaited, each bounded by `CALLBACK_TIMEOUT`) or else `log_success_event` / `log_failure_event` (run
in the dispatcher's own threads, so a hung one cannot starve the loop's default executor), called
as `(kwargs, response_obj, start_time, end_time)`. A callback that raises or hangs is logged and
skipped; requests never wait for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib
import inspect
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from parley.config import ConfigError
from parley.config.observability import ObservabilitySettings
from parley.core.context import RequestContext
from parley.core.tasks import Tasks
from parley.pipeline.filter import Filter, Phase
from parley.store.records import KeyRecord

log = logging.getLogger("parley.callbacks")

CALLBACK_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class CallRecord:
    """What a callback learns about one request (LiteLLM's standard logging payload, in part)."""

    id: str
    call_type: str  # the route
    status: str  # "success" or "failure"
    status_code: int
    model: str | None
    model_group: str | None
    model_id: str | None
    custom_llm_provider: str | None
    api_base: str | None
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    total_tokens: int
    response_cost: float
    start_time: float
    end_time: float
    completion_start_time: float | None
    key_alias: str | None
    team_id: str | None
    end_user: str | None
    request_tags: tuple[str, ...]
    error_type: str | None
    error_message: str | None
    cache_hit: bool


def call_record(ctx: RequestContext) -> CallRecord:
    u, dep = ctx.usage, ctx.deployment
    record = ctx.auth if isinstance(ctx.auth, KeyRecord) else None
    elapsed = (ctx.ended_at or ctx.started) - ctx.started
    first = None if ctx.first_byte_at is None else ctx.started_at + (ctx.first_byte_at - ctx.started)
    failed = ctx.status >= 400 or ctx.error_type is not None
    return CallRecord(
        id=ctx.request_id,
        call_type=ctx.route,
        status="failure" if failed else "success",
        status_code=ctx.status,
        model=ctx.upstream_model or ctx.model,
        model_group=dep.model_name if dep is not None else ctx.model,
        model_id=dep.id if dep is not None else None,
        custom_llm_provider=dep.provider if dep is not None else None,
        api_base=dep.api_base if dep is not None else None,
        stream=ctx.stream,
        prompt_tokens=u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens,
        completion_tokens=u.output_tokens,
        cache_read_input_tokens=u.cache_read_input_tokens,
        cache_creation_input_tokens=u.cache_creation_input_tokens,
        total_tokens=u.total_tokens,
        response_cost=ctx.cost or 0.0,
        start_time=ctx.started_at,
        end_time=ctx.started_at + elapsed,
        completion_start_time=first,
        key_alias=record.label if record else None,
        team_id=record.team_id if record else None,
        end_user=ctx.end_user,
        request_tags=tuple(ctx.tags),
        error_type=ctx.error_type,
        error_message=ctx.error_message,
        cache_hit=ctx.cache_hit,
    )


def load_callback(path: str, config_dir: str | None) -> Any:
    """The object at `module.attr` (a class is instantiated); the config's folder is searched too,
    as LiteLLM does for `custom_callbacks.py` next to the config."""
    module_name, _, attr = path.rpartition(".")
    beside = config_dir is not None and os.path.isfile(
        os.path.join(config_dir, module_name.split(".")[0] + ".py")
    )
    if config_dir is not None and beside and config_dir not in sys.path:
        sys.path.insert(0, config_dir)
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"litellm_settings.callbacks: cannot load {path!r}: {e}") from None
    return target() if inspect.isclass(target) else target


def check_callbacks(settings: ObservabilitySettings, config_path: str | None) -> None:
    """Load every callback once (ConfigError if one cannot be): `parley serve` checks before starting."""
    config_dir = os.path.dirname(os.path.abspath(config_path)) if config_path else None
    for path in settings.custom_callbacks:
        load_callback(path, config_dir)


class _Sink:
    """One callback with its own bounded queue, task and thread: a slow one delays only itself."""

    def __init__(self, path: str, callback: Any, size: int, success: bool, failure: bool) -> None:
        self.path, self.callback, self.success, self.failure = path, callback, success, failure
        self.queue: asyncio.Queue[CallRecord] = asyncio.Queue(size)
        self.dropped = 0
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="parley-callback")
        self.task = asyncio.get_running_loop().create_task(self._deliver_forever())

    def offer(self, record: CallRecord) -> None:
        if not (self.success if record.status == "success" else self.failure):
            return
        try:
            self.queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("logging callback %s falls behind: %d records dropped", self.path, self.dropped)

    async def stop(self) -> None:
        """Deliver what is queued (for a few seconds at most), then stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CALLBACK_TIMEOUT):
                await self.queue.join()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.thread.shutdown(wait=False, cancel_futures=True)

    async def _deliver_forever(self) -> None:
        while True:
            record = await self.queue.get()
            try:
                await self._deliver(record)
            finally:
                self.queue.task_done()

    async def _deliver(self, record: CallRecord) -> None:
        kind = record.status
        kwargs = _litellm_kwargs(record)
        times = (dt.datetime.fromtimestamp(record.start_time), dt.datetime.fromtimestamp(record.end_time))
        try:
            async with asyncio.timeout(CALLBACK_TIMEOUT):
                method = getattr(self.callback, f"async_log_{kind}_event", None)
                if method is not None:
                    await method(kwargs, None, *times)
                    return
                method = getattr(self.callback, f"log_{kind}_event", None)
                if method is not None:
                    loop = asyncio.get_running_loop()
                    await loop.run_in_executor(self.thread, method, kwargs, None, *times)
        except TimeoutError:
            log.warning(
                "logging callback %s took over %gs on request %s", self.path, CALLBACK_TIMEOUT, record.id
            )
        except Exception:
            log.exception("logging callback %s failed on request %s", self.path, record.id)


class CallbackDispatch(Filter):
    phase = Phase.LOGGING

    def __init__(self, settings: ObservabilitySettings, tasks: Tasks, config_path: str | None) -> None:
        config_dir = os.path.dirname(os.path.abspath(config_path)) if config_path else None
        self.callbacks = [(p, load_callback(p, config_dir)) for p in settings.custom_callbacks]
        self.settings = settings
        self.sinks: list[_Sink] = []
        tasks.on_startup(self.start)
        tasks.on_shutdown(self.stop)

    def on_done(self, ctx: RequestContext) -> None:
        if self.sinks:
            record = call_record(ctx)
            for sink in self.sinks:
                sink.offer(record)

    async def start(self) -> None:
        s = self.settings
        self.sinks = [
            _Sink(
                path, callback, s.callback_queue_size, path not in s.failure_only, path not in s.success_only
            )
            for path, callback in self.callbacks
        ]

    async def stop(self) -> None:
        sinks, self.sinks = self.sinks, []
        await asyncio.gather(*(sink.stop() for sink in sinks))


def _litellm_kwargs(record: CallRecord) -> dict[str, Any]:
    """The `kwargs` LiteLLM's callbacks read: the standard logging object and the usual keys."""
    payload = asdict(record)
    payload["request_tags"] = list(record.request_tags)
    return {
        "model": record.model,
        "litellm_call_id": record.id,
        "call_type": record.call_type,
        "stream": record.stream,
        "response_cost": record.response_cost,
        "cache_hit": record.cache_hit,
        "standard_logging_object": payload,
        "litellm_params": {
            "metadata": {"user_api_key_alias": record.key_alias, "tags": list(record.request_tags)}
        },
    }
