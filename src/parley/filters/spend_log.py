"""After every call: its cost (estimated for broken streams) and one spend-log row for the writer."""

from __future__ import annotations

import time

from parley.core.context import RequestContext
from parley.pipeline.filter import Filter, Phase
from parley.spend.periods import DayStamp, day_of
from parley.spend.rows import SpendRow
from parley.spend.service import StoreService
from parley.store.records import KeyRecord


def finish_usage(ctx: RequestContext) -> None:
    """A stream that ended without `message_stop` (client left, upstream broke): add an estimate
    for what the usage events did not report, and mark the usage estimated."""
    if not ctx.stream or ctx.first_byte_at is None:
        return
    sniffer = ctx.stream_sniffer
    if sniffer is not None and sniffer.saw_stop:
        return
    if sniffer is None and ctx.status == 200 and ctx.error_type is None:
        return
    usage = ctx.usage
    if sniffer is not None:
        seen = sniffer.output_chars // 4  # upper-end estimate from the delta events relayed
        if seen > usage.output_tokens:
            usage.output_tokens = seen
            usage.estimated = True
    estimate = ctx.input_estimate
    if (
        estimate
        and usage.input_tokens == 0
        and usage.cache_read_input_tokens == 0
        and usage.cache_creation_input_tokens == 0
    ):
        usage.input_tokens = estimate
        usage.estimated = True
    if sniffer is not None and not sniffer.saw_stop:
        usage.estimated = True


def call_cost(service: StoreService, ctx: RequestContext) -> float:
    """USD for this request (computed once, memoized on the context)."""
    if ctx.cost is None:
        finish_usage(ctx)
        ctx.cost = _priced(service, ctx)
    return ctx.cost


def _priced(service: StoreService, ctx: RequestContext) -> float:
    """Cost at the deployment's prices; pass-through calls (no deployment) at the model's list
    price, each model of a batch separately, batches at the batch discount."""
    by_model = ctx.usage_by_model
    if by_model:
        parts = [(service.prices.for_model(model), usage) for model, usage in by_model.items()]
    elif ctx.deployment is not None or ctx.route.startswith("/anthropic/"):
        parts = [(service.prices.for_deployment(ctx.deployment, ctx.upstream_model or ctx.model), ctx.usage)]
    else:
        return 0.0
    batch = ctx.price_tier == "batch"
    total = sum(price.cost(usage) * ((1 - price.batch_discount) if batch else 1) for price, usage in parts)
    return total * ctx.price_factor


def spend_row(ctx: RequestContext, cost: float, day: DayStamp | None = None) -> SpendRow:
    """The request's spend-log row: a tuple in `rows.COLUMNS` order, built once."""
    record = ctx.auth if isinstance(ctx.auth, KeyRecord) else None
    usage, dep, now = ctx.usage, ctx.deployment, time.time()
    ttft, retrieval, started = ctx.ttft_ms, ctx.retrieval, ctx.started_at
    key: str | None = record.token if record else None
    alias = (record.key_alias or record.key_name) if record else ("master" if ctx.auth == "master" else None)
    user: str | None = record.user_id if record else None
    team: str | None = record.team_id if record else None
    return (
        ctx.spend_id or ctx.request_id,  # request_id (batch results: once per batch)
        key,  # api_key
        alias,  # key_alias
        user,
        team,  # team_id
        ctx.end_user,
        ctx.session_id,
        list(ctx.tags) or None,  # request_tags
        ctx.route,
        ctx.model,
        dep.id if dep is not None else None,  # model_id
        dep.provider if dep is not None else None,  # custom_llm_provider
        ctx.upstream_model,
        usage.input_tokens,  # prompt_tokens
        usage.output_tokens,  # completion_tokens
        usage.cache_read_input_tokens,
        usage.cache_creation_input_tokens,
        usage.total_tokens,
        cost,  # spend
        bool(usage.estimated),
        ctx.status,
        ctx.error_type,
        ctx.stream,
        ctx.cache_hit,
        round(ctx.latency_ms, 3),
        round(ttft, 3) if ttft is not None else None,
        started,  # start_time
        now,  # end_time
        day(started) if day is not None else day_of(started),
        {"stores": list(retrieval.stores), "chunks": retrieval.chunks} if retrieval is not None else None,
        ctx.guardrail_summary,  # guardrails
        ctx.cc_version,
        ctx.cc_entrypoint,
    )


class SpendTracker(Filter):
    phase = Phase.ACCOUNTING

    def __init__(self, service: StoreService) -> None:
        self.service = service
        self.day = DayStamp()

    def on_done(self, ctx: RequestContext) -> None:
        if ctx.auth is None and ctx.status == 401:
            return  # no row for requests that never authenticated
        self.service.writer.enqueue(spend_row(ctx, call_cost(self.service, ctx), self.day))
