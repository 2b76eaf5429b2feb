"""The router's entry point: choose a deployment for a request and make the attempt.

`Router.run` is what every route calls; retries, fallbacks, cooldowns and load balancing live
behind it so routes stay the same as the routing gets smarter. One run:

1. the requested model group is tried up to 1 + num_retries times; each try picks a healthy
   deployment (not cooling down, under its rpm/tpm) by the strategy or by session affinity,
   preferring one not yet tried in this request;
2. a try fails on a connection error (502), a timeout (504), a 408/409/429/5xx/529 reply, or a
   stream that dies or opens with an error event before its first byte reached the client;
   failures count towards the deployment's cooldown; waits between tries back off exponentially
   with jitter and honour retry-after / retry-after-ms when the same deployment is tried again;
3. when the group is exhausted, the fallback groups for the failure's kind are tried in order;
4. the last upstream reply is returned as it is (or the last GatewayError raised); with every
   deployment cooling down and nothing else to try: 529 overloaded_error with retry-after.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from parley.core.context import RequestContext, StateKey
from parley.core.deployment import Target
from parley.core.errors import GatewayError
from parley.core.hooks import overrides
from parley.core.stream import UpstreamReply
from parley.core.usage import Usage
from parley.router.events import AttemptEnd, RouterEvents
from parley.router.health import Health
from parley.router.outcome import StreamFailed, classify, peek, retry_after
from parley.router.settings import RouterSettings, dep_limit, dep_timeouts
from parley.router.strategy import SESSION_HEADER, choose
from parley.router.table import ModelTable
from parley.transport.http import UpstreamBroken

log = logging.getLogger("parley.router")
# The two common ends of an attempt, built once (a frozen dataclass costs ~7k instructions to build)
_CANCELLED = AttemptEnd(0, False, "cancelled")
_OK = AttemptEnd(200, True)

Attempt = Callable[[Target], Awaitable[UpstreamReply]]

# The deployment a request holds "in flight" until it is done (settled by RouterAccounting).
INFLIGHT: StateKey[str] = StateKey("router.inflight")


@dataclass(slots=True)
class Failure:
    """One failed try: what to tell the client if nothing else works."""

    kind: str  # "retry", "context_window", "content_policy", "fatal", "unavailable"
    reply: UpstreamReply | None = None
    error: GatewayError | None = None
    wait: float | None = None  # retry-after asked by the upstream, or cooldown left


class Router:
    def __init__(
        self,
        table: ModelTable,
        settings: RouterSettings | None = None,
        health: Health | None = None,
        events: tuple[RouterEvents, ...] = (),
    ) -> None:
        self.table = table
        self.settings = settings or RouterSettings()
        self.health = health or Health(self.settings)
        self.events = events  # observers of attempts, fallbacks, cooldowns (metrics, traces)
        # the observers that hear of each attempt's start and end (overriding the no-op)
        self._started = tuple(e for e in events if overrides(e, RouterEvents, "attempt_started"))
        self._ended = tuple(e for e in events if overrides(e, RouterEvents, "attempt_ended"))

    def targets(self, model: str, allowed: tuple[str, ...] = ()) -> list[Target]:
        """The deployments serving `model`; 404 naming what may be asked for instead: every served
        model, or for a key limited to some models, those only (nothing else is disclosed)."""
        targets = self.table.resolve(model)
        if not targets:
            if allowed:
                hint = f"models your key may use: {', '.join(allowed)}"
            else:
                hint = f"models served: {', '.join(self.table.names()) or 'none'}"
            raise GatewayError(404, f"model: {model!r} is not served here; {hint}", "not_found_error")
        return targets

    async def run(self, ctx: RequestContext, model: str, attempt: Attempt) -> UpstreamReply:
        """Send the request to a deployment serving `model`; `attempt` makes one try on a target."""
        self.targets(model)
        result = await self._run_group(ctx, model, attempt)
        if isinstance(result, UpstreamReply):
            ctx.response_headers["x-parley-attempts"] = str(ctx.attempts)
            return result
        if result.kind != "fatal":
            fallen = await self._fall_back(ctx, model, attempt, result)
            if isinstance(fallen, UpstreamReply):
                return fallen
            result = fallen
        return self._give_up(ctx, model, result)

    async def _fall_back(
        self, ctx: RequestContext, model: str, attempt: Attempt, failure: Failure
    ) -> UpstreamReply | Failure:
        """The model's own group failed: its fallback groups for the failure's kind, in order."""
        groups = list(self.settings.fallbacks_for(failure.kind, model))  # a copy: popped below
        tried = {model}
        while groups:
            group = groups.pop(0)
            if group in tried:
                continue
            tried.add(group)
            for e in self.events:
                e.fallback(ctx, model, group)
            result = await self._run_group(ctx, group, attempt)
            if isinstance(result, UpstreamReply):
                ctx.response_headers["x-parley-fallback"] = group
                ctx.response_headers["x-parley-attempts"] = str(ctx.attempts)
                return result
            if result.kind != "unavailable":
                failure = result
            if result.kind == "fatal":
                break
        return failure

    def _give_up(self, ctx: RequestContext, model: str, failure: Failure | None) -> UpstreamReply:
        ctx.response_headers["x-parley-attempts"] = str(ctx.attempts)
        if failure is None or (failure.reply is None and failure.error is None):
            wait = max(1, math.ceil(failure.wait or 1)) if failure else 1
            raise GatewayError(
                529,
                f"model {model!r}: every deployment is cooling down after failures; retry in {wait}s",
                "overloaded_error",
                headers={"retry-after": str(wait), **ctx.response_headers},
            )
        if failure.reply is not None:
            return failure.reply
        error = failure.error
        assert error is not None  # reply and error both None was handled above
        error.headers = {**error.headers, **ctx.response_headers}
        raise error

    async def _run_group(self, ctx: RequestContext, group: str, attempt: Attempt) -> UpstreamReply | Failure:
        targets = self.table.resolve(group)
        if not targets:
            return Failure("unavailable")
        tries = 1 + self._num_retries(targets)
        failed: set[str] = set()
        last: Failure | None = None
        previous: Target | None = None
        for n in range(tries):
            candidates = await self._healthy(targets)
            if not candidates:
                return last if last is not None else self._unavailable(group, targets)
            fresh = [t for t in candidates if t.deployment.id not in failed] if failed else candidates
            if len(fresh) == 1:  # nothing to choose (`choose` would return it)
                target = fresh[0]
            else:
                target = choose(
                    fresh or candidates,
                    self.settings.strategy,
                    self.health,
                    _session(ctx),
                    self.settings.latency_buffer,
                )
            if n > 0:
                delay = self._delay(
                    n, last, same=previous is not None and previous.deployment.id == target.deployment.id
                )
                if delay is None:
                    assert last is not None  # set by every try before this one
                    return last
                if delay > 0:
                    await asyncio.sleep(delay)
            if self.events:  # the observers told when the attempt starts and how it ended (inline:
                for e in self._started:  # one coroutine less per attempt)
                    e.attempt_started(ctx, target)
                end = _CANCELLED
                try:
                    outcome = await self._try(ctx, target, attempt)
                    end = _attempt_end(outcome, n == tries - 1)
                finally:
                    for e in self._ended:
                        e.attempt_ended(ctx, target, end)
            else:
                outcome = await self._try(ctx, target, attempt)
            if log.isEnabledFor(logging.DEBUG):
                _debug_try(ctx, group, n, tries, target, outcome)
            if isinstance(outcome, UpstreamReply):
                return outcome
            last, previous = outcome, target
            if outcome.kind != "retry":
                return outcome
            failed.add(target.deployment.id)
        assert last is not None  # tries >= 1, and a try that does not return sets it
        return last

    def _unavailable(self, group: str, targets: list[Target]) -> Failure:
        """No deployment may be used: all cooling down (529 later), or all at rpm/tpm capacity (429)."""
        cooling = [self.health.cooling(t.deployment.id) for t in targets]
        if all(c > 0 for c in cooling):
            return Failure("unavailable", wait=min(cooling))
        wait = 60 - time.time() % 60
        error = GatewayError(
            429,
            f"model {group!r}: every deployment is at its rpm/tpm capacity",
            "rate_limit_error",
            headers={"retry-after": str(max(1, math.ceil(wait)))},
        )
        return Failure("unavailable", error=error, wait=wait)

    async def _healthy(self, targets: list[Target]) -> list[Target]:
        ids = [t.deployment.id for t in targets]
        await self.health.sync(ids)
        now = time.monotonic()
        alone = len(targets) == 1  # a lone deployment never cools down: there is nothing else to try
        out = []
        for t in targets:
            if not alone and self.health.cooling(t.deployment.id, now) > 0:
                continue
            rpm, tpm = dep_limit(t.deployment, "rpm"), dep_limit(t.deployment, "tpm")
            if rpm or tpm:
                used_requests, used_tokens = self.health.usage(t.deployment.id)
                if (rpm and used_requests >= rpm) or (tpm and used_tokens >= tpm):
                    continue
            out.append(t)
        return out

    def _num_retries(self, targets: list[Target]) -> int:
        for t in targets:
            value = t.deployment.params.get("num_retries")
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
        return self.settings.num_retries

    def _delay(self, n: int, last: Failure | None, same: bool) -> float | None:
        """Seconds to wait before try `n` (1-based retries); None: do not retry."""
        s = self.settings
        if not same:
            return s.retry_after
        asked = last.wait if last is not None else None
        if asked is not None:
            if asked > s.max_retry_after:
                return None
            return max(asked, s.retry_after)
        backoff = min(s.backoff_max, s.backoff_initial * 2 ** (n - 1)) * (1 - 0.25 * random.random())
        return max(backoff, s.retry_after)

    async def _try(self, ctx: RequestContext, target: Target, attempt: Attempt) -> UpstreamReply | Failure:
        dep = target.deployment
        ctx.deployment = dep
        ctx.upstream_model = target.upstream_model
        ctx.attempts += 1
        if ctx.attempts > 1:  # a new try: what the last one counted or failed with is not this one's
            ctx.usage = Usage()
            ctx.error_type = None
            ctx.error_message = None
        first_byte, total = dep_timeouts(dep, self.settings, ctx.stream)
        self.health.begin(dep.id)
        started = time.perf_counter()
        limit = first_byte if ctx.stream else min(first_byte, total)
        try:
            if limit < dep.timeout:  # else the HTTP client's own timeouts are as tight
                async with asyncio.timeout(limit):
                    reply = await _first_byte(attempt, target)
            else:  # `_first_byte` inline: one coroutine less per request
                reply = await attempt(target)
                if reply.source is not None and reply.status < 400:
                    reply = await peek(reply)
        except StreamFailed as e:
            return await self._failed(
                ctx, dep.id, Failure("retry", error=GatewayError(e.status, e.message)), e.message
            )
        except TimeoutError:
            error = GatewayError(
                504, f"upstream {dep.id} sent nothing within {first_byte:g}s", "timeout_error"
            )
            return await self._failed(ctx, dep.id, Failure("retry", error=error), error.message)
        except UpstreamBroken as e:
            error = GatewayError(502, f"upstream connection failed: {e}", "api_error")
            return await self._failed(ctx, dep.id, Failure("retry", error=error), error.message)
        except GatewayError as e:
            if e.status in (502, 504):
                return await self._failed(ctx, dep.id, Failure("retry", error=e), e.message)
            self.health.end(dep.id)
            return Failure("fatal", error=e)
        except BaseException:
            self.health.end(dep.id)
            raise
        self.health.observe_latency(dep.id, time.perf_counter() - started)
        kind = classify(reply.status, reply.body, reply.headers)
        if kind == "ok":
            ctx.state.put(INFLIGHT, dep.id)  # released with the token count when done
            return reply
        if kind == "retry":
            return await self._failed(
                ctx,
                dep.id,
                Failure("retry", reply=reply, wait=retry_after(reply.headers)),
                f"HTTP {reply.status}",
            )
        self.health.end(dep.id)
        return Failure(kind, reply=reply)

    async def _failed(self, ctx: RequestContext, dep_id: str, failure: Failure, reason: str) -> Failure:
        self.health.end(dep_id)
        cooldown = await self.health.fail(dep_id, reason)
        if cooldown:
            for e in self.events:
                e.cooldown(dep_id, cooldown)
        return failure


async def _first_byte(attempt: Attempt, target: Target) -> UpstreamReply:
    """The reply, with the first chunk of a stream already read (see `peek`)."""
    reply = await attempt(target)
    if reply.source is not None and reply.status < 400:
        reply = await peek(reply)
    return reply


def _attempt_end(outcome: UpstreamReply | Failure, last_try: bool) -> AttemptEnd:
    if isinstance(outcome, UpstreamReply):
        return _OK if outcome.status == 200 else AttemptEnd(outcome.status, True)
    status = outcome.reply.status if outcome.reply else outcome.error.status if outcome.error else 0
    error = outcome.error.type if outcome.error else f"http_{status}"
    return AttemptEnd(status, False, error, retried=outcome.kind == "retry" and not last_try)


def _session(ctx: RequestContext) -> str | None:
    return ctx.session_id or ctx.headers.get(SESSION_HEADER) or ctx.end_user


def _debug_try(ctx: RequestContext, group: str, n: int, tries: int, target: Target, outcome: object) -> None:
    dep = target.deployment
    result = (
        f"status {outcome.status}" if isinstance(outcome, UpstreamReply) else getattr(outcome, "kind", "?")
    )
    log.debug(
        "%s: model %r try %d/%d on %s (%s/%s at %s): %s",
        ctx.request_id,
        group,
        n + 1,
        tries,
        dep.id,
        dep.provider,
        dep.model,
        dep.api_base,
        result,
    )
