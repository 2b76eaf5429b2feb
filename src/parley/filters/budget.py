"""Budgets that hold under concurrency.

Strict mode (default): before the call, reserve the request's cost bound (a bound on the input
tokens, one per byte of text, at the dearest input rate that can apply, plus max_tokens at the
output rate) on every budget that applies
(key, user, team, customer) in one atomic step. When what remains cannot cover the bound, lower
max_tokens to what it can cover (header `x-parley-max-tokens-capped`) or, below a minimal reply,
refuse with 402 `billing_error` naming the budget. After the call the hold is settled to the real
cost. Soft mode (`budget_mode: soft` on a key): refuse only once spend has reached the budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from parley.config import GeneralSettings
from parley.core.context import RequestContext, StateKey
from parley.core.errors import GatewayError
from parley.core.stream import UpstreamReply
from parley.core.tasks import Tasks
from parley.core.tokens import bound_request_tokens, count_request_tokens
from parley.filters.spend_log import call_cost
from parley.filters.virtual_keys import CUSTOMER
from parley.pipeline.filter import Filter, Phase
from parley.router.table import ModelTable
from parley.spend.budget_lease import BudgetLease
from parley.spend.budget_lua import ADMIT_PART
from parley.spend.ledger import BudgetLine, Grant, RedisLedger
from parley.spend.pricing import Price
from parley.spend.service import StoreService
from parley.store.lease import nothing
from parley.store.lua_batch import Ask
from parley.store.records import KeyRecord, Subject

CAPPED_HEADER = "x-parley-max-tokens-capped"


def budget_lines(ctx: RequestContext) -> list[BudgetLine]:
    """Every budget that applies to this request."""
    lines = []
    record = ctx.auth if isinstance(ctx.auth, KeyRecord) else None
    if record is not None:
        if record.max_budget is not None:
            lines.append(
                BudgetLine(
                    "key",
                    record.token,
                    record.max_budget,
                    record.budget_duration,
                    record.budget_reset_at,
                    record.spend,
                    f"key {record.label}",
                )
            )
        for subject in (record.user, record.team):
            line = _subject_line(subject)
            if line is not None:
                lines.append(line)
    line = _subject_line(ctx.state.get(CUSTOMER))
    if line is not None:
        lines.append(line)
    return lines


def _subject_line(subject: Subject | None) -> BudgetLine | None:
    if subject is None or subject.max_budget is None:
        return None
    name = "end user" if subject.kind == "customer" else subject.kind
    return BudgetLine(
        subject.kind,
        subject.id,
        subject.max_budget,
        subject.budget_duration,
        subject.budget_reset_at,
        subject.spend,
        f"{name} {subject.id!r}",
    )


def _exhausted(line: BudgetLine, remaining: float, needed: float) -> GatewayError:
    return GatewayError(
        402,
        f"budget exceeded: {line.label} has a max_budget of ${line.limit:g} "
        f"and ${max(remaining, 0.0):.6f} left, less than this request needs "
        f"(${needed:.6f})",
        "billing_error",
    )


# The budgets a request holds money on until it is done.
_HELD: StateKey[list[BudgetLine]] = StateKey("budget.lines")


@dataclass(slots=True)
class _Plan:
    """What a request reserves: `bound` at most, `floor` at least; soft: a zero hold."""

    lines: list[BudgetLine]
    soft: bool
    bound: float = 0.0
    floor: float = 0.0
    input_cost: float = 0.0
    unit_out: float = 0.0  # the output price per token
    field: str = "max_tokens"


# The reservation Redis made in the admission call: the plan, and the grant.
_ADMITTED: StateKey[tuple[_Plan, Grant]] = StateKey("budget.admitted")
# A request holding its cost bound on a lease (`parley.spend.budget_lease`), not in Redis.
_LEASED: StateKey[tuple[BudgetLease, float]] = StateKey("budget.leased")
_PLAN: StateKey[_Plan] = StateKey("budget.plan")  # (made once per request)


class BudgetPolicy(Filter):
    phase = Phase.BUDGET
    admission_lua = ADMIT_PART  # with Redis, the reservation is a part of the admission call

    def __init__(
        self, settings: GeneralSettings, service: StoreService, table: ModelTable, tasks: Tasks
    ) -> None:
        self.service = service
        self.table = table
        self.tasks = tasks
        self.min_reply_tokens = settings.budget_min_reply_tokens
        self.input_margin = settings.budget_input_margin

    def _plan(self, ctx: RequestContext, body: dict[str, Any] | None) -> _Plan | None:
        if body is None or ctx.route.endswith("/count_tokens"):
            return None
        lines = budget_lines(ctx)
        if not lines:
            return None
        record = ctx.auth if isinstance(ctx.auth, KeyRecord) else None
        deferred = ctx.route.startswith("/anthropic/") and ctx.route != "/anthropic/v1/messages"
        if deferred or (record is not None and record.budget_mode == "soft"):
            # soft keys; and pass-through calls billed later (batches): refused once nothing is left
            return _Plan(lines, soft=True)
        price = self._price(ctx)
        field = "max_tokens"
        if ctx.api == "openai" and ("max_completion_tokens" in body or "max_tokens" not in body):
            field = "max_completion_tokens"  # the field OpenAI's newer models require
        max_tokens = body.get(field)
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            max_tokens = 4096 if ctx.api == "openai" else 0
        input_cost = self._input_cost(ctx, body, price)
        bound = input_cost + max_tokens * price.output
        floor = input_cost + min(self.min_reply_tokens, max_tokens) * price.output
        return _Plan(lines, False, bound, floor, input_cost, price.output, field)

    def _plan_of(self, ctx: RequestContext, body: dict[str, Any] | None) -> _Plan | None:
        plan = ctx.state.get(_PLAN)
        if plan is None:
            plan = self._plan(ctx, body)
            if plan is not None:
                ctx.state.put(_PLAN, plan)
        return plan

    def admission_ask(self, ctx: RequestContext, body: dict[str, Any] | None) -> Ask | None:
        ledger = self.service.ledger
        plan = self._plan_of(ctx, body) if isinstance(ledger, RedisLedger) else None
        if plan is None:
            return None
        assert isinstance(ledger, RedisLedger)
        return self._ask(ctx, ledger, plan, {})

    def lease_claim(self, ctx: RequestContext, body: dict[str, Any] | None) -> Callable[[], None] | None:
        """Hold the request's cost bound on a lease of this process (a commit to run), None to ask
        Redis (no lease with room, or a soft budget: those ask Redis every time)."""
        ledger = self.service.ledger
        assert isinstance(ledger, RedisLedger)  # (an asker only with Redis)
        plan = self._plan_of(ctx, body)
        if plan is None:
            return nothing
        lease = ledger.leases.claim(plan.lines, plan.bound) if ledger.leases and not plan.soft else None
        if lease is None:
            return None

        def commit() -> None:
            lease.take(plan.bound)
            ctx.state.put(_LEASED, (lease, plan.bound))  # (done with it whatever refuses the request)

        return commit

    def _ask(
        self,
        ctx: RequestContext,
        ledger: RedisLedger,
        plan: _Plan,
        seeds: dict[int, float],
        lease: tuple[str, float] | None = None,
    ) -> Ask:
        """The reservation, with a lease asked for (`lease`: the one asked already, when asking again)."""
        p = plan
        if lease is None:
            lease = ledger.leases.ask(p.lines, p.bound) if ledger.leases and not p.soft else ("", 0.0)
        ask = ledger.ask(ctx.request_id, p.lines, p.bound, p.floor, p.input_cost, p.unit_out, seeds, lease)
        ask.data = (plan, seeds, lease)
        return ask

    async def recheck(self, ctx: RequestContext, ask: Ask, result: Any) -> Ask:
        """Budgets missing from Redis: read them from the database, then ask again."""
        ledger = self.service.ledger
        assert isinstance(ledger, RedisLedger)
        plan, seeds, lease = ask.data
        for i in result[1:]:
            seeds[int(i) - 1] = await ledger.seed(plan.lines[int(i) - 1])
        return self._ask(ctx, ledger, plan, seeds, lease)

    def admitted(self, ctx: RequestContext, ask: Ask, result: Any) -> None:
        ledger = self.service.ledger
        plan, _, lease = ask.data
        assert isinstance(ledger, RedisLedger)
        grant = ledger.grant(plan.lines, plan.bound, result, ctx.request_id, lease)
        if grant is not None:  # (None: still unseeded; on_request reserves on its own then)
            ctx.state.put(_HELD, plan.lines)  # released when done, whatever refuses the request
            ctx.state.put(_ADMITTED, (plan, grant))

    async def on_request(self, ctx: RequestContext, body: dict[str, Any] | None) -> UpstreamReply | None:
        if ctx.state.get(_LEASED) is not None:  # its whole bound is held on a lease: nothing to cap
            return None
        admitted = ctx.state.pop(_ADMITTED)
        if admitted is not None:
            plan, grant = admitted
        else:
            found = self._plan_of(ctx, body)
            if found is None:
                return None
            plan = found
            ledger = self.service.ledger
            grant = await ledger.reserve(
                ctx.request_id, plan.lines, plan.bound, plan.floor, plan.input_cost, plan.unit_out
            )
        ctx.state.put(_HELD, plan.lines)  # settled after the call (a refusal releases the hold)
        if plan.soft:
            # a zero hold through the same ledger, refused only once nothing is left, so settled
            # spend counts at once (the ledger, not the cached record, knows what was spent)
            if grant.remaining <= 0:
                raise _exhausted(grant.binding or plan.lines[0], grant.remaining, 0.0)
            return None
        assert body is not None  # (a plan is made only for a body)
        await self._cap(ctx, body, plan, grant)
        return None

    async def _cap(self, ctx: RequestContext, body: dict[str, Any], plan: _Plan, grant: Grant) -> None:
        """Refuse when the budgets cannot cover a minimal reply; lower max_tokens to what they cover."""
        if (grant.amount <= 0 and plan.bound > 0) or grant.remaining <= 0:
            raise _exhausted(grant.binding or plan.lines[0], grant.remaining, plan.floor)
        if grant.amount >= plan.bound or plan.unit_out <= 0:
            return
        capped = grant.capped  # Redis capped it and shrank the hold in the same step
        if not capped:
            capped = max(1, int((grant.amount - plan.input_cost) / plan.unit_out))
            await self.service.ledger.shrink(
                ctx.request_id, plan.input_cost + capped * plan.unit_out, plan.lines
            )
        body[plan.field] = capped
        ctx.body_changed = True
        ctx.response_headers[CAPPED_HEADER] = str(capped)

    def _price(self, ctx: RequestContext) -> Price:
        """The dearest price among the deployments that may serve the request (the model's list
        price on the pass-through, whose models need not be configured)."""
        targets = self.table.resolve(ctx.model or "")
        if not targets:
            return self.service.prices.for_model(ctx.model)
        prices = [self.service.prices.for_deployment(t.deployment, t.upstream_model) for t in targets]
        return max(prices, key=lambda p: (p.output, p.max_input))

    def _input_cost(self, ctx: RequestContext, body: dict[str, Any], price: Price) -> float:
        """What the input can cost at most: the bound on the upstream's token count (one token
        per byte of text), or the estimate times the margin when that is larger."""
        estimate = count_request_tokens(body)
        ctx.input_estimate = estimate
        tokens = max(bound_request_tokens(body), math.ceil(estimate * self.input_margin))
        return tokens * (price.max_input if _uses_cache(body) else price.input)

    def on_done(self, ctx: RequestContext) -> None:
        leased = ctx.state.pop(_LEASED)
        if leased is not None:
            lease, bound = leased
            lease.finish(bound, call_cost(self.service, ctx))
            return
        lines = ctx.state.pop(_HELD)
        if not lines:
            return
        self.service.ledger.release(ctx.request_id, call_cost(self.service, ctx), lines)


def _uses_cache(body: dict[str, Any]) -> bool:
    """Whether the request may write to the prompt cache (then input can cost a cache write)."""
    if "cache_control" in body:
        return True
    for part in (body.get("system"), body.get("tools"), body.get("messages")):
        if isinstance(part, list) and b'"cache_control"' in _dumps(part):
            return True
    return False


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return b""
