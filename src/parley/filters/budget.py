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
from parley.spend.ledger import BudgetLine
from parley.spend.pricing import Price
from parley.spend.service import StoreService
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


class BudgetPolicy(Filter):
    phase = Phase.BUDGET

    def __init__(
        self, settings: GeneralSettings, service: StoreService, table: ModelTable, tasks: Tasks
    ) -> None:
        self.service = service
        self.table = table
        self.tasks = tasks
        self.min_reply_tokens = settings.budget_min_reply_tokens
        self.input_margin = settings.budget_input_margin

    async def on_request(self, ctx: RequestContext, body: dict[str, Any] | None) -> UpstreamReply | None:
        if body is None or ctx.route.endswith("/count_tokens"):
            return None
        lines = budget_lines(ctx)
        if not lines:
            return None
        record = ctx.auth if isinstance(ctx.auth, KeyRecord) else None
        deferred = ctx.route.startswith("/anthropic/") and ctx.route != "/anthropic/v1/messages"
        if deferred or (record is not None and record.budget_mode == "soft"):
            # soft keys; and pass-through calls billed later (batches): refused once nothing is left
            await self._check_soft(ctx, lines)
            return None
        await self._reserve(ctx, body, lines)
        return None

    async def _check_soft(self, ctx: RequestContext, lines: list[BudgetLine]) -> None:
        """Soft mode: a zero hold through the same ledger, refused only once nothing is left, so
        settled spend counts at once (the ledger, not the cached record, knows what was spent)."""
        grant = await self.service.ledger.reserve(ctx.request_id, lines, 0.0, 0.0)
        ctx.state.put(_HELD, lines)  # settled after the call, like a strict hold
        if grant.remaining <= 0:
            raise _exhausted(grant.binding or lines[0], grant.remaining, 0.0)

    def _price(self, ctx: RequestContext) -> Price:
        """The dearest price among the deployments that may serve the request (the model's list
        price on the pass-through, whose models need not be configured)."""
        targets = self.table.resolve(ctx.model or "")
        if not targets:
            return self.service.prices.for_model(ctx.model)
        prices = [self.service.prices.for_deployment(t.deployment, t.upstream_model) for t in targets]
        return max(prices, key=lambda p: (p.output, p.max_input))

    async def _reserve(self, ctx: RequestContext, body: dict[str, Any], lines: list[BudgetLine]) -> None:
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
        ledger = self.service.ledger
        grant = await ledger.reserve(ctx.request_id, lines, bound, floor)
        if (grant.amount <= 0 and bound > 0) or grant.remaining <= 0:
            ctx.state.put(_HELD, lines)  # release whatever was held
            raise _exhausted(grant.binding or lines[0], grant.remaining, floor)
        ctx.state.put(_HELD, lines)
        if grant.amount < bound and price.output > 0:
            capped = max(1, int((grant.amount - input_cost) / price.output))
            body[field] = capped
            ctx.body_changed = True
            ctx.response_headers[CAPPED_HEADER] = str(capped)
            await ledger.shrink(ctx.request_id, input_cost + capped * price.output, lines)

    def _input_cost(self, ctx: RequestContext, body: dict[str, Any], price: Price) -> float:
        """What the input can cost at most: the bound on the upstream's token count (one token
        per byte of text), or the estimate times the margin when that is larger."""
        estimate = count_request_tokens(body)
        ctx.input_estimate = estimate
        tokens = max(bound_request_tokens(body), math.ceil(estimate * self.input_margin))
        return tokens * (price.max_input if _uses_cache(body) else price.input)

    def on_done(self, ctx: RequestContext) -> None:
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
