"""Items for Anthropic deployments with `params.native_batches: true`, sent to Anthropic as a native
Message Batch (Anthropic's batch price) instead of one call each.

`NativeItemEndpoint` is the `/v1/messages` endpoint with another `send`: the pipeline runs the
item's filters (key checks, budget hold, guardrails, cache) as for any item, and `send` hands the
item to `NativeBatches`, which gathers the items of one deployment for `native_gather_seconds`,
creates one upstream batch for them, records its id on each item (a restarted runner polls it
again instead of sending the items twice), polls it every `native_poll_seconds`, cancels it when
the parley batch is canceled, and answers each item from the upstream results. Each item's
custom_id upstream is its request id, `<batch>_<index>`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from parley.batches.store import BatchStore, Claimed
from parley.config import BatchSettings
from parley.core.context import RequestContext
from parley.core.deployment import Deployment, Target
from parley.core.errors import GatewayError
from parley.core.stream import UpstreamReply
from parley.pipeline.lifecycle import Pipeline
from parley.pipeline.messages import MessagesEndpoint
from parley.providers.anthropic import DEFAULT_VERSION
from parley.transport.http import HttpClient

log = logging.getLogger("parley.batches")

ANTHROPIC = "https://api.anthropic.com"
ERROR_STATUS = {"invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
                "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429,
                "overloaded_error": 529, "billing_error": 402, "timeout_error": 504}  # fmt: skip

Ending = Callable[[str], Awaitable[str | None]]


class Unsent(Exception):
    """The upstream batch ended without running the item: `canceled` or `expired`."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state


def native_target(pipeline: Pipeline, model: str) -> Target | None:
    """The deployment for a native batch: every deployment of the model is Anthropic with
    `native_batches: true` (then the first one is used), else None."""
    targets = pipeline.router.table.resolve(model)
    if targets and all(
        t.deployment.api == "anthropic" and t.deployment.params.get("native_batches") is True for t in targets
    ):
        return targets[0]
    return None


@dataclass(slots=True)
class _Waiter:
    item: Claimed
    future: asyncio.Future[dict[str, Any]]  # the item's `result` object from the upstream


class NativeBatches:
    def __init__(
        self, http: HttpClient, store: BatchStore, owner: str, settings: BatchSettings, ending: Ending
    ) -> None:
        self.http = http
        self.store = store
        self.owner = owner
        self.settings = settings
        self.ending = ending
        self.gathering: dict[tuple[str, bytes], list[tuple[_Waiter, dict[str, Any]]]] = {}
        self.waiting: dict[str, list[_Waiter]] = {}  # upstream batch id -> its items
        self.tasks: set[asyncio.Task[None]] = set()

    async def submit(
        self, item: Claimed, target: Target, body: dict[str, Any], headers: dict[str, str]
    ) -> dict[str, Any]:
        waiter = _Waiter(item, asyncio.get_running_loop().create_future())
        key = (target.deployment.id, orjson.dumps(headers))
        group = self.gathering.setdefault(key, [])
        group.append((waiter, {**body, "model": target.upstream_model}))
        if len(group) == 1:
            self._spawn(self._create_later(key, target.deployment, headers))
        return await waiter.future

    async def resume(self, item: Claimed, dep: Deployment, headers: dict[str, str]) -> dict[str, Any]:
        """An item whose upstream batch was created by a runner before this one."""
        assert item.upstream_batch is not None
        waiter = _Waiter(item, asyncio.get_running_loop().create_future())
        waiters = self.waiting.setdefault(item.upstream_batch, [])
        waiters.append(waiter)
        if len(waiters) == 1:
            self._spawn(self._poll(item.upstream_batch, dep, headers))
        return await waiter.future

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()

    async def _create_later(self, key: tuple[str, bytes], dep: Deployment, headers: dict[str, str]) -> None:
        await asyncio.sleep(self.settings.native_gather_seconds)
        group = self.gathering.pop(key, [])
        requests = [{"custom_id": w.item.request_id, "params": params} for w, params in group]
        waiters = [w for w, _ in group]
        try:
            batch = await self._call(dep, headers, "POST", "/v1/messages/batches", {"requests": requests})
        except GatewayError as error:
            envelope = {"type": "error", "error": {"type": error.type, "message": error.message}}
            for w in waiters:
                if not w.future.done():
                    w.future.set_result({"type": "errored", "error": envelope})
            return
        upstream_id = str(batch["id"])
        keys = [(w.item.batch_id, w.item.idx) for w in waiters]
        try:
            await self.store.mark_submitted(self.owner, keys, upstream_id, dep.id)
        except Exception:  # still polled here; only a crash before the next try would send them again
            log.exception("could not record native batch %s on its items", upstream_id)
        self.waiting.setdefault(upstream_id, []).extend(waiters)
        await self._poll(upstream_id, dep, headers)

    async def _poll(self, upstream_id: str, dep: Deployment, headers: dict[str, str]) -> None:
        cancel_sent = False
        path = f"/v1/messages/batches/{upstream_id}"
        while True:
            try:
                batch = await self._call(dep, headers, "GET", path, None)
                if batch.get("processing_status") == "ended" and batch.get("results_url"):
                    await self._answer(upstream_id, dep, headers, str(batch["results_url"]))
                    return
                if not cancel_sent and await self._canceled(upstream_id):
                    await self._call(dep, headers, "POST", path + "/cancel", None)
                    cancel_sent = True
            except GatewayError as error:
                log.warning("native batch %s: %s; trying again", upstream_id, error.message)
            await asyncio.sleep(self.settings.native_poll_seconds)

    async def _canceled(self, upstream_id: str) -> bool:
        for batch_id in {w.item.batch_id for w in self.waiting.get(upstream_id, [])}:
            if await self.ending(batch_id) == "canceled":
                return True
        return False

    async def _answer(self, upstream_id: str, dep: Deployment, headers: dict[str, str], url: str) -> None:
        reply = await self.http.send("GET", url, _headers(dep, headers), None, dep.timeout, False)
        if reply.status >= 300:
            raise GatewayError(
                502, f"results of native batch {upstream_id}: HTTP {reply.status}", "api_error"
            )
        results: dict[str, dict[str, Any]] = {}
        for line in (reply.body or b"").splitlines():
            if line.strip():
                entry = orjson.loads(line)
                results[str(entry.get("custom_id"))] = entry.get("result") or {}
        for w in self.waiting.pop(upstream_id, []):
            missing = {
                "type": "error",
                "error": {"type": "api_error", "message": "missing from the upstream results"},
            }
            if not w.future.done():
                w.future.set_result(results.get(w.item.request_id, {"type": "errored", "error": missing}))

    async def _call(
        self, dep: Deployment, headers: dict[str, str], method: str, path: str, body: Any
    ) -> dict[str, Any]:
        data = orjson.dumps(body) if body is not None else None
        url = (dep.api_base or ANTHROPIC).rstrip("/") + path
        reply = await self.http.send(method, url, _headers(dep, headers), data, dep.timeout, False)
        try:
            parsed = orjson.loads(reply.body or b"null")
        except orjson.JSONDecodeError:
            parsed = None
        if reply.status >= 300 or not isinstance(parsed, dict):
            error = parsed.get("error") if isinstance(parsed, dict) else None
            if isinstance(error, dict):
                raise GatewayError(
                    reply.status, str(error.get("message")), str(error.get("type", "api_error"))
                )
            raise GatewayError(502, f"{method} {path}: HTTP {reply.status}", "api_error")
        return parsed


def _headers(dep: Deployment, headers: dict[str, str]) -> dict[str, str]:
    out = {"content-type": "application/json", "anthropic-version": DEFAULT_VERSION, **headers}
    if dep.api_key:
        out["x-api-key"] = dep.api_key
    out.update(dep.extra_headers)
    return out


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class NativeItemEndpoint(MessagesEndpoint):
    """`/v1/messages` for one item of a native batch: `send` waits for the upstream batch's answer."""

    def __init__(
        self, pipeline: Pipeline, route: str, native: NativeBatches, item: Claimed, target: Target
    ) -> None:
        super().__init__(pipeline)
        self.route = route
        self.native = native
        self.item = item
        self.target = target

    async def send(self, ctx: RequestContext, body: dict[str, Any] | None, raw: bytes) -> UpstreamReply:
        assert body is not None
        ctx.deployment = self.target.deployment
        ctx.upstream_model = self.target.upstream_model
        ctx.price_tier = "batch"
        headers = dict(self.item.headers)
        if self.item.upstream_batch is not None:
            result = await self.native.resume(self.item, self.target.deployment, headers)
        else:
            result = await self.native.submit(self.item, self.target, body, headers)
        kind = result.get("type")
        if kind == "succeeded" and isinstance(result.get("message"), dict):
            message = result["message"]
            ctx.usage.update(message.get("usage") or {})
            return UpstreamReply(200, {"content-type": "application/json"}, body=orjson.dumps(message))
        if kind == "errored":
            envelope = _mapping(result.get("error"))
            status = ERROR_STATUS.get(str(_mapping(envelope.get("error")).get("type")), 500)
            return UpstreamReply(status, {"content-type": "application/json"}, body=orjson.dumps(envelope))
        raise Unsent(str(kind) if kind in ("canceled", "expired") else "expired")
