"""The Prometheus metric families parley exports: one spec list that both value stores build from.

With one worker the values are lean in-memory children (`lean.py`) that one collector renders; in
multi-process mode they are prometheus_client's own metrics, on no registry: each worker writes
its values to files that `/metrics` reads together. Either way a family is a `Labeled`: its label
children, memoized (label sets are bounded), so a request costs dictionary lookups and updates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REQUEST_LABELS = ("route", "model", "deployment", "status_class")
KEY_LABELS = ("key_alias", "team")


@dataclass(frozen=True)
class Spec:
    """One family: its name (counters without `_total`), help text, type and label names."""

    name: str
    help: str
    kind: str  # "counter", "gauge" or "histogram"
    labels: tuple[str, ...] = ()
    keyed: bool = False  # key alias and team follow `labels` with `metrics_key_labels`
    buckets: tuple[float, ...] = ()  # histograms' upper bounds, without +Inf
    mode: str = "all"  # gauges' multiprocess_mode


SPECS: dict[str, Spec] = {  # by `Families` field, in exposition order
    "requests": Spec(
        "parley_requests",
        "Client requests by route, model group, deployment and status class",
        "counter",
        REQUEST_LABELS,
        keyed=True,
    ),
    "tokens": Spec(
        "parley_tokens",
        "Tokens by kind (input, output, cache_read, cache_write)",
        "counter",
        ("model", "deployment", "kind"),
    ),
    "spend": Spec("parley_spend_usd", "Spend in US dollars", "counter", ("model",), keyed=True),
    "latency": Spec(
        "parley_request_duration_seconds",
        "Time from request to the end of the reply",
        "histogram",
        ("route", "model"),
        buckets=LATENCY_BUCKETS,
    ),
    "ttft": Spec(
        "parley_time_to_first_token_seconds",
        "Time to the first streamed byte (streams only)",
        "histogram",
        ("model",),
        buckets=TTFT_BUCKETS,
    ),
    "tpot": Spec(
        "parley_time_per_output_token_seconds",
        "Generation time per output token (after the first byte for streams)",
        "histogram",
        ("model",),
        buckets=TPOT_BUCKETS,
    ),
    "in_flight": Spec(
        "parley_requests_in_flight",
        "Requests routed and not yet finished",
        "gauge",
        ("route",),
        mode="livesum",
    ),
    "attempts": Spec(
        "parley_upstream_attempts",
        "Upstream attempts by deployment and outcome",
        "counter",
        ("model", "deployment", "status_class"),
    ),
    "retries": Spec(
        "parley_upstream_retries", "Attempts that failed and were retried", "counter", ("model",)
    ),
    "fallbacks": Spec(
        "parley_fallbacks", "Moves to a fallback model group", "counter", ("model", "fallback")
    ),
    "cooldowns": Spec("parley_deployment_cooldowns", "Cooldowns started", "counter", ("deployment",)),
    "refusals": Spec(
        "parley_refusals", "Requests refused by parley (budget, rate_limit)", "counter", ("reason", "model")
    ),
    "cache_hits": Spec("parley_cache_hits", "Replies served from the response cache", "counter", ("model",)),
    "guardrails": Spec("parley_guardrail_actions", "Guardrail actions", "counter", ("guardrail", "action")),
    "queue_depth": Spec(
        "parley_spend_queue_depth", "Spend-log rows waiting for the database", "gauge", mode="livesum"
    ),
    "queue_lag": Spec(
        "parley_spend_queue_lag_seconds", "Age of the oldest spend-log row waiting", "gauge", mode="livemax"
    ),
    "db_errors": Spec("parley_db_errors", "Failed database writes (spend-log flushes)", "counter"),
    "redis_errors": Spec("parley_redis_errors", "Failed Redis calls", "counter"),
}


class CounterChild(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class GaugeChild(CounterChild, Protocol):
    def dec(self, amount: float = 1) -> None: ...

    def set(self, value: float) -> None: ...


class HistogramChild(Protocol):
    def observe(self, amount: float) -> None: ...


C = TypeVar("C")


class Labeled(Generic[C]):
    """A family's children by label values, made on first use (`make(values)`). A family without
    labels has its one child from the start (Prometheus shows it before its first update)."""

    __slots__ = ("children", "labels", "make", "spec")

    def __init__(self, spec: Spec, labels: tuple[str, ...], make: Callable[[tuple[str, ...]], C]) -> None:
        self.spec, self.labels, self.make = spec, labels, make
        self.children: dict[tuple[str, ...], C] = {} if labels else {(): make(())}

    def __call__(self, *values: str) -> C:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.make(values)
        return child


@dataclass(frozen=True)
class Families:
    requests: Labeled[CounterChild]
    tokens: Labeled[CounterChild]
    spend: Labeled[CounterChild]
    latency: Labeled[HistogramChild]
    ttft: Labeled[HistogramChild]
    tpot: Labeled[HistogramChild]
    in_flight: Labeled[GaugeChild]
    attempts: Labeled[CounterChild]
    retries: Labeled[CounterChild]
    fallbacks: Labeled[CounterChild]
    cooldowns: Labeled[CounterChild]
    refusals: Labeled[CounterChild]
    cache_hits: Labeled[CounterChild]
    guardrails: Labeled[CounterChild]
    queue_depth: Labeled[GaugeChild]
    queue_lag: Labeled[GaugeChild]
    db_errors: Labeled[CounterChild]
    redis_errors: Labeled[CounterChild]

    def all(self) -> list[Labeled[Any]]:
        """Every family, in exposition order."""
        return [getattr(self, attr) for attr in SPECS]


Maker = Callable[[Spec, tuple[str, ...]], Callable[[tuple[str, ...]], Any]]


def make_families(key_labels: bool, maker: Maker) -> Families:
    """Every family; `maker(spec, label names)` gives the function that makes one child from label
    values. `key_labels` adds key alias and team to the request and spend counters."""
    out = {}
    for attr, spec in SPECS.items():
        labels = (*spec.labels, *KEY_LABELS) if spec.keyed and key_labels else spec.labels
        out[attr] = Labeled(spec, labels, maker(spec, labels))
    return Families(**out)


def client_maker(spec: Spec, labels: tuple[str, ...]) -> Callable[[tuple[str, ...]], Any]:
    """Children from prometheus_client's metrics on no registry (multi-process mode: values in
    files)."""
    kind: Any = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}[spec.kind]
    extra: dict[str, Any] = {"buckets": spec.buckets} if spec.kind == "histogram" else {}
    if spec.kind == "gauge":
        extra["multiprocess_mode"] = spec.mode
    metric = kind(spec.name, spec.help, labels, registry=None, **extra)
    return (lambda values: metric.labels(*values)) if labels else lambda _values: metric
