"""Prometheus metrics of a one-worker `parley serve` (values in memory, no files), read with
Prometheus' own text parser and checked against what the requests were: counts, token sums from
the fake upstream's usage, spend from the configured prices, latency buckets bounded by the delays
the upstream was told to take and the times the client measured."""

from __future__ import annotations

import os
import time

import anthropic
import httpx2 as httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from parley.filters.metrics.families import LATENCY_BUCKETS, SPECS
from parley.testing.procs import Gateway, anthropic_deployment

MASTER = "sk-master-one-worker"
ASK = [{"role": "user", "content": "hello metrics"}]
IN_PRICE, OUT_PRICE = 2e-6, 7e-6
# (delay in seconds, input tokens, output tokens, streamed)
REPLIES = [
    (0.0, 11, 5, False),
    (0.12, 40, 9, False),
    (0.3, 7, 13, True),
    (0.0, 100, 2, True),
    (0.6, 3, 30, False),
]


@pytest.fixture
def one_worker(tmp_path, fake_upstream):
    fake_upstream.reset()
    config = {
        "model_list": [
            anthropic_deployment(
                "claude-m", fake_upstream, input_cost_per_token=IN_PRICE, output_cost_per_token=OUT_PRICE
            )
        ],
        "router_settings": {"num_retries": 0},
        "general_settings": {"master_key": MASTER},
        "litellm_settings": {"callbacks": ["prometheus"]},
    }
    gw = Gateway(config, workers=1, env={"PARLEY_METRICS_DIR": str(tmp_path)})
    yield gw, fake_upstream
    gw.stop()
    assert os.listdir(tmp_path) == []  # one worker keeps its values in memory: no files


def _families(url: str) -> dict:
    r = httpx.get(url + "/metrics", headers={"x-api-key": MASTER}, timeout=10)
    assert r.status_code == 200
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def _value(family, name: str, **labels: str) -> float:
    [value] = [s.value for s in family.samples if s.name == name and s.labels == labels]
    return value


def _ask(client: anthropic.Anthropic, stream: bool) -> float:
    """One request; the seconds the client waited for its whole reply."""
    t0 = time.perf_counter()
    if stream:
        with client.messages.stream(model="claude-m", max_tokens=64, messages=ASK) as s:
            s.get_final_message()
    else:
        client.messages.create(model="claude-m", max_tokens=64, messages=ASK)
    return time.perf_counter() - t0


def test_one_worker_counts_what_the_requests_were(one_worker):
    gw, upstream = one_worker
    upstream.script(
        *({"delay": d, "usage": {"input_tokens": i, "output_tokens": o}} for d, i, o, _ in REPLIES),
        {"status": 429, "error": {"type": "rate_limit_error", "message": "slow"}},
    )
    client = anthropic.Anthropic(base_url=gw.url, api_key=MASTER, max_retries=0)
    waited = [_ask(client, stream) for *_, stream in REPLIES]
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="claude-m", max_tokens=8, messages=ASK)
    m = _families(gw.url)

    ok = {"route": "/v1/messages", "model": "claude-m", "deployment": "claude-m#0"}
    assert _value(m["parley_requests"], "parley_requests_total", **ok, status_class="2xx") == len(REPLIES)
    assert _value(m["parley_requests"], "parley_requests_total", **ok, status_class="4xx") == 1
    attempts = m["parley_upstream_attempts"]
    assert _value(attempts, "parley_upstream_attempts_total", **_but(ok, "route"), status_class="2xx") == 5
    assert _value(attempts, "parley_upstream_attempts_total", **_but(ok, "route"), status_class="4xx") == 1
    tokens = m["parley_tokens"]
    model_dep = _but(ok, "route")
    assert _value(tokens, "parley_tokens_total", **model_dep, kind="input") == sum(r[1] for r in REPLIES)
    assert _value(tokens, "parley_tokens_total", **model_dep, kind="output") == sum(r[2] for r in REPLIES)
    assert {s.labels["kind"] for s in tokens.samples} == {"input", "output"}  # no zero series
    spend = sum(i * IN_PRICE + o * OUT_PRICE for _, i, o, _ in REPLIES)
    assert _value(m["parley_spend_usd"], "parley_spend_usd_total", model="claude-m") == pytest.approx(spend)
    assert _value(m["parley_requests_in_flight"], "parley_requests_in_flight", route="/v1/messages") == 0

    latency, labels = m["parley_request_duration_seconds"], {"route": "/v1/messages", "model": "claude-m"}
    assert _value(latency, "parley_request_duration_seconds_count", **labels) == len(REPLIES) + 1
    delays = [r[0] for r in REPLIES]
    total = _value(latency, "parley_request_duration_seconds_sum", **labels)
    assert sum(delays) < total < sum(waited) + 1.0  # + the 429, answered at once
    for le in LATENCY_BUCKETS:  # at least those done within `le` by the client's clock, at most
        n = _value(latency, "parley_request_duration_seconds_bucket", **labels, le=str(le))
        assert sum(w <= le for w in waited) <= n <= sum(d <= le for d in delays) + 1
    assert _value(latency, "parley_request_duration_seconds_bucket", **labels, le="+Inf") == len(REPLIES) + 1

    streams = sum(r[3] for r in REPLIES)
    ttft = m["parley_time_to_first_token_seconds"]
    assert _value(ttft, "parley_time_to_first_token_seconds_count", model="claude-m") == streams
    tpot = m["parley_time_per_output_token_seconds"]
    assert _value(tpot, "parley_time_per_output_token_seconds_count", model="claude-m") == len(REPLIES)
    assert _value(tpot, "parley_time_per_output_token_seconds_bucket", model="claude-m", le="+Inf") == 5


def test_one_worker_lists_every_family_as_prometheus_client_does(one_worker):
    gw, _ = one_worker
    client = anthropic.Anthropic(base_url=gw.url, api_key=MASTER, max_retries=0)
    client.messages.create(model="claude-m", max_tokens=8, messages=ASK)
    m = _families(gw.url)
    # the text format lists `_created` samples as gauge families of their own
    assert [name for name in m if not name.endswith("_created")] == [s.name for s in SPECS.values()]
    for spec in SPECS.values():
        family = m[spec.name]
        assert (family.type, family.documentation) == (spec.kind, spec.help)
    assert {s.name for s in m["parley_requests"].samples} == {"parley_requests_total"}
    latency = {s.name for s in m["parley_request_duration_seconds"].samples}
    assert latency == {f"parley_request_duration_seconds_{x}" for x in ("bucket", "count", "sum")}
    for name in ("parley_requests_created", "parley_request_duration_seconds_created"):
        [created] = m[name].samples
        assert abs(created.value - time.time()) < 60
    # families without labels are listed before any update (as prometheus_client lists them)
    assert _value(m["parley_db_errors"], "parley_db_errors_total") == 0
    assert not m["parley_fallbacks"].samples


def _but(labels: dict[str, str], drop: str) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k != drop}
