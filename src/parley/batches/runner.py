"""The background runner: claims items, sends each through the `/v1/messages` pipeline, writes results.

Each item goes through the same `Pipeline.process` as an interactive call (key checks, budget hold,
guardrails, cache, the router's retries and fallbacks, spend row), under the item's own request
id `<batch>_<index>`: a rerun after a crash holds the same budget slot and its spend row is the
same row (the spend log skips a row it already has), so an item is billed once. The result is
written only after the spend row is on disk (the spend journal), and only by the lease's holder.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
import uuid
from typing import Any

import orjson

from parley.batches import openai
from parley.batches.gate import CapacityGate
from parley.batches.native import NativeBatches, NativeItemEndpoint, Unsent, native_target
from parley.batches.store import OPENAI, BatchStore, Claimed
from parley.batches.wire import ROUTE
from parley.config import BatchSettings
from parley.core.context import RequestContext
from parley.core.deployment import Target
from parley.core.errors import GatewayError
from parley.core.stream import UpstreamReply
from parley.filters.virtual_keys import check_key
from parley.pipeline.chat import ChatEndpoint
from parley.pipeline.lifecycle import Endpoint, Pipeline
from parley.pipeline.messages import MessagesEndpoint
from parley.spend.service import StoreService
from parley.store.outage import DATABASE_ERRORS
from parley.store.records import KeyRecord
from parley.transport.http import HttpClient

log = logging.getLogger("parley.batches")

SWEEP_SECONDS = 1.0  # how often batches are checked for their end, expiry and cancellation
# With no work, the wait between looks doubles from poll_interval up to this (a batch created on
# this instance wakes the runner at once; one created on another is seen within this).
IDLE_POLL_SECONDS = 5.0
PURGE_SECONDS = 600.0
STOP_GRACE = 8.0  # seconds running items get to finish when the gateway stops
DURABLE_WAIT = 5.0  # longest wait for a spend row to reach the journal's disk
STATUS_TTL = 0.25  # seconds a batch's status is trusted before an item of it starts


class _Stopping(Exception):
    """The runner stops before the item was sent: it goes back to the queue."""


class BatchItemEndpoint(MessagesEndpoint):
    """`/v1/messages` for one batch item (its spend rows name the batches route)."""

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__(pipeline)
        self.route = ROUTE


class BatchChatEndpoint(ChatEndpoint):
    """`/v1/chat/completions` for one item of an OpenAI batch (spend rows name `/v1/batches`)."""

    route = openai.ROUTE


class RunnerLock:
    """SQLite: one runner per database file, the process holding an flock next to it (released
    by the kernel when the process dies). Postgres (`path` None): every instance runs."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.fd: int | None = None

    def held(self) -> bool:
        if self.path is None or self.fd is not None:
            return True
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class ResultWriter:
    """Results of items that finish close together go to the database in one transaction."""

    GATHER = 0.01  # seconds the first result waits for others

    def __init__(self, store: BatchStore, owner: str) -> None:
        self.store = store
        self.owner = owner
        self.pending: list[tuple[Claimed, str, str, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def write(self, item: Claimed, state: str, result: str) -> None:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((item, state, result, future))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush())
        await future

    async def _flush(self) -> None:
        await asyncio.sleep(self.GATHER)
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                written = await self.store.finish(
                    self.owner, [(i, s, r) for i, s, r, _ in batch], time.time()
                )
            except Exception as e:  # each waiting item sees the failure
                for *_, future in batch:
                    future.set_exception(e)
                continue
            if 0 <= written < len(batch):  # (a driver that cannot count says -1)
                log.warning("%d batch results not written: their leases had passed on", len(batch) - written)
            for *_, future in batch:
                future.set_result(None)


class BatchRunner:
    def __init__(
        self,
        store: BatchStore,
        pipeline: Pipeline,
        service: StoreService,
        settings: BatchSettings,
        lock_path: str | None,
        http: HttpClient,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.service = service
        self.settings = settings
        self.master = service.config.general.master_key is not None
        self.owner = uuid.uuid4().hex
        self.gate = CapacityGate(pipeline.router.health, settings)
        self.endpoint = BatchItemEndpoint(pipeline)
        self.chat = BatchChatEndpoint(pipeline)
        self.lock = RunnerLock(lock_path)
        self.results = ResultWriter(store, self.owner)
        self.running: dict[tuple[str, int], asyncio.Task[None]] = {}
        self.parked: dict[tuple[str, int], asyncio.Task[None]] = {}  # items in a native batch upstream
        self.native = NativeBatches(http, store, self.owner, settings, self._ending)
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._status: dict[str, tuple[float, str | None]] = {}  # batch -> (read at, final state if ending)

    async def start(self) -> None:
        if self.settings.run:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.native.stop()
        for task in list(self.parked.values()):  # back to the queue: the next runner polls upstream
            task.cancel()
        if self.running:
            await asyncio.wait(list(self.running.values()), timeout=STOP_GRACE)
        for task in list(self.running.values()):
            task.cancel()
        waiting = [*self.running.values(), *self.parked.values()]
        if waiting:
            await asyncio.wait(waiting, timeout=1.0)
        self.lock.release()

    async def _loop(self) -> None:
        last_sweep = last_renew = last_purge = 0.0
        idle = self.settings.poll_interval  # the wait before the next look when there is no work
        while not self.stopping.is_set():
            free = 0
            claimed: list[Claimed] = []
            try:
                if self.lock.held():
                    now = time.time()
                    if (self.running or self.parked) and now - last_renew >= self.settings.lease_seconds / 3:
                        held = [*self.running, *self.parked]
                        await self.store.renew(self.owner, held, now + self.settings.lease_seconds)
                        last_renew = now
                    if now - last_sweep >= SWEEP_SECONDS:
                        await self.store.sweep(now)
                        for batch_id in await self.store.unfinalized():
                            await openai.finalize(self.store, batch_id, now)
                        last_sweep = now
                    if now - last_purge >= PURGE_SECONDS:
                        await self.store.purge(now - self.settings.results_retention_days * 86400)
                        last_purge = now
                    free = self.settings.max_concurrency - len(self.running)
                    if free > 0:
                        claimed = await self.store.claim(self.owner, free, now, self.settings.lease_seconds)
            except DATABASE_ERRORS as e:
                log.warning("batch runner: database unavailable (%s); retrying", e)
            except Exception:  # a bug: logged, and the loop goes on
                log.exception("batch runner: unexpected error; retrying")
            for item in claimed:
                key = (item.batch_id, item.idx)
                self.running[key] = asyncio.get_running_loop().create_task(self._work(item))
            if self.running or self.parked or claimed:
                idle = self.settings.poll_interval
            if free <= 0 or len(claimed) < free:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), idle)
                if self.wake.is_set():
                    idle = self.settings.poll_interval
                else:  # nothing to do: look less often, up to every IDLE_POLL_SECONDS
                    idle = min(2 * idle, max(IDLE_POLL_SECONDS, self.settings.poll_interval))

    async def _work(self, item: Claimed) -> None:
        key = (item.batch_id, item.idx)
        try:
            target = self._native(item)
            if target is None:
                state, result = await self._run(item)
            else:  # it waits on Anthropic's batch, not on a slot here
                self.parked[key] = self.running.pop(key)
                self.wake.set()
                state, result = await self._run_native(item, target)
            await self.results.write(item, state, result)
        except (_Stopping, asyncio.CancelledError):
            with contextlib.suppress(*DATABASE_ERRORS):
                await asyncio.shield(self.store.release(self.owner, item))
        except Exception:  # a bug or the database: the lease lapses (no longer renewed), then a retry
            log.exception("batch item %s failed; it will be retried", item.request_id)
        finally:
            self.running.pop(key, None)
            self.parked.pop(key, None)
            self.wake.set()

    async def _run(self, item: Claimed) -> tuple[str, str]:
        """(final state, result JSON) of one item, sent through the pipeline."""
        ctx = _context(item)
        ctx.price_factor = 1.0 - self.settings.discount
        try:
            body = await self._checked(ctx, item)
            targets = self.pipeline.router.targets(item.model, ctx.allowed_models)
            slot = await self.gate.acquire(targets, self.stopping)
            if slot is None:
                raise _Stopping
            try:
                ending = await self._ending(item.batch_id)
                if ending is not None:  # canceled or expired while it waited for capacity: never sent
                    return ending, orjson.dumps({"type": ending}).decode()
                with self.gate.sending(slot):
                    state, result = await self._send(ctx, body, item, self._endpoint(item))
            finally:
                self.gate.release(slot)
        except GatewayError as error:  # refused before it was sent: still its one spend row
            state, result = _refused(ctx, error, item)
            self.pipeline.finish(ctx)
        await self._spend_durable()
        return state, result

    async def _run_native(self, item: Claimed, target: Target | None) -> tuple[str, str]:
        """An item for a `native_batches` deployment: the same pipeline, sent in Anthropic's batch
        and billed at its batch price (`ctx.price_tier`), not at the gateway-run discount."""
        ctx = RequestContext(api="anthropic", route=ROUTE, headers=item.headers)
        ctx.request_id = item.request_id
        try:
            body = await self._checked(ctx, item)
            if target is None:
                raise GatewayError(
                    404, f"deployment {item.deployment!r} is no longer configured", "not_found_error"
                )
            endpoint = NativeItemEndpoint(self.pipeline, ROUTE, self.native, item, target)
            state, result = await self._send(ctx, body, item, endpoint)
        except Unsent as unsent:  # canceled or expired upstream: no cost, the budget hold released
            ctx.status, ctx.error_type = 499, unsent.state
            state, result = unsent.state, orjson.dumps({"type": unsent.state}).decode()
            self.pipeline.finish(ctx)
        except GatewayError as error:
            state, result = _refused(ctx, error)
            self.pipeline.finish(ctx)
        await self._spend_durable()
        return state, result

    def _native(self, item: Claimed) -> Target | None:
        """Where an item for a native batch goes (None: it runs here)."""
        if item.kind == OPENAI:
            return None
        if item.upstream_batch is None:
            return native_target(self.pipeline, item.model)
        for target in self.pipeline.router.table.resolve(item.model):
            if target.deployment.id == item.deployment:
                return target
        return None  # (its deployment is gone: `_run_native` errors it)

    async def _checked(self, ctx: RequestContext, item: Claimed) -> dict[str, Any]:
        body: dict[str, Any] = orjson.loads(item.params)
        await self._authorize(ctx, item)
        self._endpoint(item).check(ctx, body)
        return body

    def _endpoint(self, item: Claimed) -> Endpoint:
        return self.chat if item.kind == OPENAI else self.endpoint

    async def _send(
        self, ctx: RequestContext, body: dict[str, Any], item: Claimed, endpoint: Endpoint
    ) -> tuple[str, str]:
        """Through the pipeline; the filters' `on_done` (spend row, budget settled) once it is over,
        but not when the runner is stopped mid-call: the item is run again, under the same id."""
        try:
            reply = await self.pipeline.process(endpoint, ctx, body, item.params.encode())
            data = await _read(reply)
            ctx.status = reply.status
            if item.kind == OPENAI:
                outcome = openai.chat_outcome(reply.status, data, ctx.request_id)
                if outcome[0] != "succeeded":
                    ctx.error_type = ctx.error_type or "api_error"
            else:
                outcome = _outcome(reply.status, data, ctx)
        except GatewayError as error:
            outcome = _refused(ctx, error, item)
        self.pipeline.finish(ctx)
        return outcome

    async def _ending(self, batch_id: str) -> str | None:
        """ "canceled" or "expired" when the batch takes no new items any more, else None."""
        now = time.monotonic()
        cached = self._status.get(batch_id)
        if cached is not None and now - cached[0] < STATUS_TTL:
            return cached[1]
        status = await self.store.status(batch_id)
        if status is None or status[0] != "in_progress":
            ending: str | None = "canceled"
        else:
            ending = "expired" if status[1] <= time.time() else None
        if len(self._status) > 1000:
            self._status.clear()
        self._status[batch_id] = (now, ending)
        return ending

    async def _authorize(self, ctx: RequestContext, item: Claimed) -> None:
        """The batch's owner, as the key check of an interactive call would find it now."""
        if item.api_key is None:
            ctx.auth = "master" if self.master else None
            return
        record: KeyRecord | None = await self.service.cache.key(item.api_key)
        if record is None:
            raise GatewayError(
                401, "the key that created this batch no longer exists", "authentication_error"
            )
        check_key(record)
        ctx.auth = record
        ctx.allowed_models = record.models

    async def _spend_durable(self) -> None:
        journal = self.service.journal
        if journal is None:
            return
        seq = journal.last_appended
        deadline = time.monotonic() + DURABLE_WAIT
        while not journal.durable(seq) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)


async def _read(reply: UpstreamReply) -> bytes:
    if reply.source is None:
        return reply.body or b""
    chunks = []
    try:
        while (chunk := await reply.source.next_chunk()) is not None:
            chunks.append(chunk)
    finally:
        reply.source.close()
    return b"".join(chunks)


def _outcome(status: int, data: bytes, ctx: RequestContext) -> tuple[str, str]:
    try:
        parsed = orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        parsed = None
    if status < 300 and isinstance(parsed, dict) and parsed.get("type") == "message":
        return "succeeded", orjson.dumps({"type": "succeeded", "message": parsed}).decode()
    ctx.error_type = ctx.error_type or "api_error"
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        envelope = {"type": "error", "error": parsed["error"], "request_id": ctx.request_id}
    else:
        message = f"upstream answered HTTP {status} with a body that is not a message"
        envelope = {
            "type": "error",
            "error": {"type": "api_error", "message": message},
            "request_id": ctx.request_id,
        }
    return "errored", _errored(envelope)


def _context(item: Claimed) -> RequestContext:
    if item.kind == OPENAI:
        ctx = RequestContext(api="openai", route=openai.ROUTE, headers=item.headers)
    else:
        ctx = RequestContext(api="anthropic", route=ROUTE, headers=item.headers)
    ctx.request_id = item.request_id
    return ctx


def _refused(ctx: RequestContext, error: GatewayError, item: Claimed | None = None) -> tuple[str, str]:
    ctx.status, ctx.error_type, ctx.error_message = error.status, error.type, error.message
    if item is not None and item.kind == OPENAI:
        return openai.chat_refused(error, ctx.request_id)
    return "errored", _errored(orjson.loads(error.anthropic_body(ctx.request_id)))


def _errored(envelope: dict[str, Any]) -> str:
    return orjson.dumps({"type": "errored", "error": envelope}).decode()


def lock_path(database_url: str) -> str | None:
    """Where SQLite's one-runner lock lives (beside the database file); None for Postgres."""
    from sqlalchemy.engine import make_url

    from parley.store.db import normalize_url

    url = make_url(normalize_url(database_url))
    if url.get_backend_name() != "sqlite":
        return None
    path = url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return path + ".batch-runner.lock"


def build_runner(pipeline: Pipeline, service: StoreService, http: HttpClient) -> BatchRunner:
    store = BatchStore(service.engine)
    return BatchRunner(store, pipeline, service, service.config.batches, lock_path(service.url), http)
