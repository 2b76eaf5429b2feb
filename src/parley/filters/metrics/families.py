"""The Prometheus metric families parley exports, created on one registry (or, in multi-process
mode, on none: each worker writes its values to files that `/metrics` reads together)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REQUEST_LABELS = ("route", "model", "deployment", "status_class")
KEY_LABELS = ("key_alias", "team")


@dataclass(frozen=True)
class Families:
    requests: Counter
    tokens: Counter
    spend: Counter
    latency: Histogram
    ttft: Histogram
    tpot: Histogram
    in_flight: Gauge
    attempts: Counter
    retries: Counter
    fallbacks: Counter
    cooldowns: Counter
    refusals: Counter
    cache_hits: Counter
    guardrails: Counter
    queue_depth: Gauge
    queue_lag: Gauge
    db_errors: Counter
    redis_errors: Counter


def make_families(registry: CollectorRegistry | None, key_labels: bool) -> Families:
    """Every family on `registry` (None in multi-process mode); `key_labels` adds key alias and team
    to the request and spend counters."""
    extra = KEY_LABELS if key_labels else ()
    r = registry
    return Families(
        requests=Counter(
            "parley_requests",
            "Client requests by route, model group, deployment and status class",
            (*REQUEST_LABELS, *extra),
            registry=r,
        ),
        tokens=Counter(
            "parley_tokens",
            "Tokens by kind (input, output, cache_read, cache_write)",
            ("model", "deployment", "kind"),
            registry=r,
        ),
        spend=Counter("parley_spend_usd", "Spend in US dollars", ("model", *extra), registry=r),
        latency=Histogram(
            "parley_request_duration_seconds",
            "Time from request to the end of the reply",
            ("route", "model"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        ),
        ttft=Histogram(
            "parley_time_to_first_token_seconds",
            "Time to the first streamed byte (streams only)",
            ("model",),
            buckets=TTFT_BUCKETS,
            registry=r,
        ),
        tpot=Histogram(
            "parley_time_per_output_token_seconds",
            "Generation time per output token (after the first byte for streams)",
            ("model",),
            buckets=TPOT_BUCKETS,
            registry=r,
        ),
        in_flight=Gauge(
            "parley_requests_in_flight",
            "Requests routed and not yet finished",
            ("route",),
            registry=r,
            multiprocess_mode="livesum",
        ),
        attempts=Counter(
            "parley_upstream_attempts",
            "Upstream attempts by deployment and outcome",
            ("model", "deployment", "status_class"),
            registry=r,
        ),
        retries=Counter(
            "parley_upstream_retries", "Attempts that failed and were retried", ("model",), registry=r
        ),
        fallbacks=Counter(
            "parley_fallbacks", "Moves to a fallback model group", ("model", "fallback"), registry=r
        ),
        cooldowns=Counter("parley_deployment_cooldowns", "Cooldowns started", ("deployment",), registry=r),
        refusals=Counter(
            "parley_refusals",
            "Requests refused by parley (budget, rate_limit)",
            ("reason", "model"),
            registry=r,
        ),
        cache_hits=Counter(
            "parley_cache_hits", "Replies served from the response cache", ("model",), registry=r
        ),
        guardrails=Counter(
            "parley_guardrail_actions", "Guardrail actions", ("guardrail", "action"), registry=r
        ),
        queue_depth=Gauge(
            "parley_spend_queue_depth",
            "Spend-log rows waiting for the database",
            registry=r,
            multiprocess_mode="livesum",
        ),
        queue_lag=Gauge(
            "parley_spend_queue_lag_seconds",
            "Age of the oldest spend-log row waiting",
            registry=r,
            multiprocess_mode="livemax",
        ),
        db_errors=Counter("parley_db_errors", "Failed database writes (spend-log flushes)", registry=r),
        redis_errors=Counter("parley_redis_errors", "Failed Redis calls", registry=r),
    )
