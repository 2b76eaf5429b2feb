"""Rate limits: requests, tokens and parallel requests per key, user, team, customer, key+model.

Every `LimitSpec` in `ctx.limits` is enforced (authentication fills them from virtual keys). A
spec of scope `key_model` has the id `<key id>:<model>` and applies only to requests for that
model. Keys without limits of their own get `router_settings.default_limits`:

    router_settings:
      default_limits: {rpm_limit: 60, tpm_limit: 100000, max_parallel_requests: 4,
                       model_rpm_limit: {claude-opus-4-1: 10}, model_tpm_limit: {...}}

applied per client credential (the key presented, hashed; requests without one share one bucket).
Tokens (input, cache writes and output) are settled after the call. Over a limit: 429
`rate_limit_error` with `retry-after` and `anthropic-ratelimit-{requests,tokens}-*` headers.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from typing import Any

from parley.config import DefaultLimits
from parley.core.context import LimitSpec, RequestContext, StateKey
from parley.core.errors import GatewayError
from parley.core.stream import UpstreamReply
from parley.filters.rate_lease import RateLease
from parley.filters.rate_limit_store import ADMIT_PART, Asked, Decision, LocalLimiter, RedisLimiter
from parley.pipeline.filter import Filter, Phase
from parley.store.lease import nothing
from parley.store.lua_batch import Ask
from parley.store.redis_link import RedisLink

# What a request holds: the limits it counted against, and whether in Redis (or on which leases).
_STATE: StateKey[tuple[list[LimitSpec], bool | list[RateLease]]] = StateKey("rate_limit")
# Redis's answer to the acquisition, from the admission call: (what was asked, the answer).
_ADMITTED: StateKey[tuple[Asked, Any]] = StateKey("rate_limit.admitted")
# The decision on a request admitted on leases, without Redis (its leases are in `_STATE`).
_LEASED: StateKey[tuple[list[LimitSpec], Decision]] = StateKey("rate_limit.leased")


def key_id(key: str | None) -> str:
    """A stable id for a credential that does not reveal it."""
    if not key:
        return "anonymous"
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def default_specs(defaults: DefaultLimits, key: str | None, model: str | None) -> list[LimitSpec]:
    per_key = bool(defaults.rpm_limit or defaults.tpm_limit or defaults.max_parallel_requests)
    rpm = defaults.model_rpm_limit.get(model) if model else None
    tpm = defaults.model_tpm_limit.get(model) if model else None
    per_model = bool(model and (rpm or tpm))
    if not (per_key or per_model):
        return []  # no default applies: the key is not hashed again on every request
    kid = key_id(key)
    specs = []
    if per_key:
        specs.append(
            LimitSpec("key", kid, defaults.rpm_limit, defaults.tpm_limit, defaults.max_parallel_requests)
        )
    if per_model:
        specs.append(LimitSpec("key_model", f"{kid}:{model}", rpm, tpm))
    return specs


def applicable(ctx: RequestContext, defaults: DefaultLimits) -> list[LimitSpec]:
    specs = [s for s in ctx.limits if s.rpm or s.tpm or s.max_parallel]
    specs = [s for s in specs if s.scope != "key_model" or s.id.endswith(f":{ctx.model}")]
    if not any(s.scope == "key" for s in ctx.limits):
        specs.extend(default_specs(defaults, ctx.key, ctx.model))
    return specs


RFC3339 = "%Y-%m-%dT%H:%M:%SZ"  # UTC, whole seconds


def rfc3339(ms_from_now: int) -> str:
    return time.strftime(RFC3339, time.gmtime(time.time() + ms_from_now / 1000))


class ResetTimes:
    """`rfc3339`, remembered for the second it names: every request of a window reports the same
    reset, so one in a second formats it."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def at(self, ms_from_now: int) -> str:
        second = int(time.time() + ms_from_now / 1000)
        if second != self._second:
            self._second, self._text = second, time.strftime(RFC3339, time.gmtime(second))
        return self._text


def refusal(decision: Decision) -> GatewayError:
    spec = decision.spec
    assert spec is not None  # a refusal names the subject that refused
    wait = max(1, math.ceil(decision.wait_ms / 1000))
    what = {
        "rpm": f"{spec.rpm} requests per minute",
        "tpm": f"{spec.tpm} tokens per minute",
        "parallel": f"{spec.max_parallel} parallel requests",
    }[decision.kind]
    headers = {"retry-after": str(wait)}
    reset = rfc3339(decision.wait_ms)
    if spec.rpm:
        headers.update(
            {
                "anthropic-ratelimit-requests-limit": str(spec.rpm),
                "anthropic-ratelimit-requests-remaining": "0" if decision.kind == "rpm" else "",
                "anthropic-ratelimit-requests-reset": reset,
            }
        )
    if spec.tpm:
        headers.update(
            {
                "anthropic-ratelimit-tokens-limit": str(spec.tpm),
                "anthropic-ratelimit-tokens-remaining": "0" if decision.kind == "tpm" else "",
                "anthropic-ratelimit-tokens-reset": reset,
            }
        )
    headers = {k: v for k, v in headers.items() if v}
    return GatewayError(
        429,
        f"rate limit exceeded: {spec.scope} limit of {what}; retry in {wait}s",
        "rate_limit_error",
        headers=headers,
    )


def success_headers(specs: list[LimitSpec], decision: Decision, reset: str) -> dict[str, str]:
    """The tightest request and token limits, as Anthropic reports its own (`reset`: when the
    window resets, `rfc3339`)."""
    rpm: tuple[int, LimitSpec] | None = None
    tpm: tuple[int, LimitSpec] | None = None
    for spec, (requests, tokens) in zip(specs, decision.used, strict=False):
        if spec.rpm and (rpm is None or spec.rpm - requests < rpm[0]):
            rpm = (spec.rpm - requests, spec)
        if spec.tpm and (tpm is None or spec.tpm - tokens < tpm[0]):
            tpm = (spec.tpm - tokens, spec)
    headers: dict[str, str] = {}
    if rpm is not None:
        headers["anthropic-ratelimit-requests-limit"] = str(rpm[1].rpm)
        headers["anthropic-ratelimit-requests-remaining"] = str(max(0, rpm[0]))
        headers["anthropic-ratelimit-requests-reset"] = reset
    if tpm is not None:
        headers["anthropic-ratelimit-tokens-limit"] = str(tpm[1].tpm)
        headers["anthropic-ratelimit-tokens-remaining"] = str(max(0, tpm[0]))
        headers["anthropic-ratelimit-tokens-reset"] = reset
    return headers


class RateLimitPolicy(Filter):
    phase = Phase.LIMITS
    admission_lua = ADMIT_PART  # with Redis, the acquisition is a part of the admission call

    def __init__(self, defaults: DefaultLimits, link: RedisLink | None) -> None:
        self.defaults = defaults
        self.local = LocalLimiter()
        self.shared = RedisLimiter(link, self.local) if link is not None else None
        self.resets = ResetTimes()

    def _specs(self, ctx: RequestContext) -> list[LimitSpec]:
        if ctx.route.endswith("/count_tokens"):  # free upstream, and Claude Code calls it often
            return []
        return applicable(ctx, self.defaults)

    def admission_ask(self, ctx: RequestContext, body: dict[str, Any] | None) -> Ask | None:
        specs = self._specs(ctx)
        return self.shared.ask(specs, ctx.request_id) if specs and self.shared is not None else None

    def admitted(self, ctx: RequestContext, ask: Ask, result: Any) -> None:
        ctx.state.put(_ADMITTED, (ask.data, result))

    def lease_claim(self, ctx: RequestContext, body: dict[str, Any] | None) -> Callable[[], None] | None:
        """With Redis: admit on this process's leases (a commit to run), None to ask Redis."""
        specs = self._specs(ctx)
        if not specs:
            return nothing
        assert self.shared is not None  # (an asker only with Redis)
        leases = self.shared.claim(specs)
        if leases is None:
            return None
        shared = self.shared

        def commit() -> None:  # (done with the leases whatever refuses the request: `on_done`)
            ctx.state.put(_STATE, (specs, leases))
            ctx.state.put(_LEASED, (specs, shared.leased(specs, leases, ctx.request_id)))

        return commit

    async def on_request(self, ctx: RequestContext, body: dict[str, Any] | None) -> UpstreamReply | None:
        leased = ctx.state.pop(_LEASED)
        if leased is not None:  # admitted on leases (`Admission`), without Redis
            specs, decision = leased
            if not decision.allowed:  # (by this process's own count)
                raise refusal(decision)
            ctx.response_headers.update(success_headers(specs, decision, self.resets.at(decision.wait_ms)))
            return None
        admitted = ctx.state.pop(_ADMITTED)
        in_redis: bool | list[RateLease]
        if admitted is not None and self.shared is not None:  # Redis answered in the admission call
            asked, result = admitted
            specs = asked.specs
            decision, in_redis = self.shared.decide(asked, ctx.request_id, result)
        else:
            specs = self._specs(ctx)
            if not specs:
                return None
            if self.shared is not None:
                decision, in_redis = await self.shared.acquire(specs, ctx.request_id)
            else:
                decision, in_redis = self.local.acquire(specs, ctx.request_id), False
        if not decision.allowed:
            raise refusal(decision)
        ctx.state.put(_STATE, (specs, in_redis))
        ctx.response_headers.update(success_headers(specs, decision, self.resets.at(decision.wait_ms)))
        return None

    def on_done(self, ctx: RequestContext) -> None:
        state = ctx.state.pop(_STATE)
        if state is None:
            return
        specs, in_redis = state
        u = ctx.usage
        tokens = 0 if ctx.cache_hit else u.input_tokens + u.cache_creation_input_tokens + u.output_tokens
        if self.shared is not None:
            self.shared.settle(specs, ctx.request_id, tokens, in_redis)
        else:
            self.local.settle(specs, ctx.request_id, tokens)
