"""Prometheus metrics from a real `parley serve --workers 2`, read with Prometheus' own text parser.

Ten mixed requests (both SDKs, JSON and streams, translated and native, a 429, an unknown model)
against real fake upstreams; the counters must agree with the spend log the database holds.
"""

from __future__ import annotations

import concurrent.futures
import glob
import json
import os
import signal
import time
from collections import defaultdict

import anthropic
import httpx2 as httpx
import openai
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from parley.config import build_config
from parley.core.context import GuardrailAction
from parley.core.errors import GatewayError
from parley.gateway import build_gateway
from parley.pipeline.filter import Filter, Phase
from parley.server.app import create_app
from parley.testing.procs import Gateway, anthropic_deployment, free_port, openai_deployment

MASTER = "sk-master-metrics"
ASK = [{"role": "user", "content": "hello metrics"}]


def scrape(url: str, **headers: str) -> dict[str, list]:
    """Every sample of /metrics by metric family name (the parser's families), fresh connection."""
    r = httpx.get(url + "/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    families: dict[str, list] = defaultdict(list)  # a family with no samples yet is not listed
    families.update((f.name, f.samples) for f in text_string_to_metric_families(r.text))
    return families


def total(samples: list, name: str, **labels: str) -> float:
    return sum(
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


@pytest.fixture(scope="module")
def metrics_gateway(tmp_path_factory, fake_upstream, fake_upstream_b):
    db = tmp_path_factory.mktemp("metrics") / "spend.db"
    config = {
        "model_list": [
            anthropic_deployment(
                "claude-m",
                fake_upstream,
                model="claude-up",
                input_cost_per_token=1e-6,
                output_cost_per_token=5e-6,
            ),
            anthropic_deployment("claude-cached", fake_upstream, model="cached-up"),
            anthropic_deployment("claude-limited", fake_upstream, model="limited-up"),
            openai_deployment("gpt-m", fake_upstream_b, model="gpt-up"),
            {"model_name": "mock-m", "params": {"model": "mock/mock-m"}},
        ],
        "router_settings": {"num_retries": 0},
        "general_settings": {"master_key": MASTER, "database_url": str(db), "spend_flush_interval": 0.1},
        "litellm_settings": {"callbacks": ["prometheus"]},
    }
    gw = Gateway(config, workers=2, env={"PARLEY_METRICS_DIR": str(db.parent)})
    yield gw, str(db.parent)
    gw.stop()


def _ten_requests(url: str) -> None:
    """Ten requests, each on its own connection, run concurrently (so both workers serve some)."""

    def claude():
        return anthropic.Anthropic(base_url=url, api_key=MASTER, max_retries=0)

    def gpt():
        return openai.OpenAI(base_url=url + "/v1", api_key=MASTER, max_retries=0)

    def stream_claude():
        with claude().messages.stream(model="claude-m", max_tokens=64, messages=ASK) as s:
            return s.get_final_message()

    def stream_gpt():
        chunks = gpt().chat.completions.create(
            model="gpt-m", messages=ASK, stream=True, stream_options={"include_usage": True}
        )
        return list(chunks)

    def limited():
        with pytest.raises(anthropic.RateLimitError):
            claude().messages.create(model="claude-limited", max_tokens=16, messages=ASK)

    def unknown():
        with pytest.raises(anthropic.NotFoundError):
            claude().messages.create(model="no-such-model", max_tokens=16, messages=ASK)

    calls = [
        lambda: claude().messages.create(model="claude-m", max_tokens=64, messages=ASK),
        lambda: claude().messages.create(model="claude-cached", max_tokens=64, messages=ASK),
        stream_claude,
        lambda: gpt().chat.completions.create(model="claude-m", messages=ASK),
        lambda: claude().messages.create(model="gpt-m", max_tokens=64, messages=ASK),
        stream_gpt,
        lambda: claude().messages.create(model="mock-m", max_tokens=64, messages=ASK),
        lambda: gpt().chat.completions.create(model="mock-m", messages=ASK),
        limited,
        unknown,
    ]
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        for future in [pool.submit(c) for c in calls]:
            future.result()


def _spend_rows(url: str, expected: int) -> list[dict]:
    deadline = time.monotonic() + 10
    while True:
        r = httpx.get(url + "/spend/logs", params={"page_size": 1000}, headers={"x-api-key": MASTER})
        rows = r.json()["data"]
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_two_workers_ten_requests_counted_once_each(metrics_gateway, fake_upstream):
    gw, metrics_base = metrics_gateway
    fake_upstream.script(
        {
            "match": {"model": "cached-up"},
            "usage": {"cache_read_input_tokens": 40, "cache_creation_input_tokens": 7},
        },
        {
            "match": {"model": "limited-up"},
            "status": 429,
            "error": {"type": "rate_limit_error", "message": "slow"},
        },
    )
    _ten_requests(gw.url)
    rows = _spend_rows(gw.url, 10)
    assert len(rows) == 10
    time.sleep(0.3)
    # Every scrape, whichever worker answers it, sees all ten requests.
    for _ in range(6):
        families = scrape(gw.url)
        assert total(families["parley_requests"], "parley_requests_total") == 10
    # ... which is the sum of what each worker wrote (which worker served what is the kernel's
    # choice; the killed-worker test below shows a total made of two workers' files)
    [directory] = glob.glob(os.path.join(metrics_base, "parley-metrics-*"))
    assert sum(_requests_by_pid(directory).values()) == 10
    requests = families["parley_requests"]
    assert total(requests, "parley_requests_total", status_class="2xx") == 8
    assert total(requests, "parley_requests_total", status_class="4xx", model="claude-limited") == 1
    assert total(requests, "parley_requests_total", status_class="4xx", model="other") == 1

    tokens = defaultdict(float)
    for s in families["parley_tokens"]:
        if s.name == "parley_tokens_total":
            tokens[s.labels["kind"]] += s.value
    sums = {
        "input": sum(r["prompt_tokens"] for r in rows),
        "output": sum(r["completion_tokens"] for r in rows),
        "cache_read": sum(r["cache_read_input_tokens"] for r in rows),
        "cache_write": sum(r["cache_creation_input_tokens"] for r in rows),
    }
    assert sums["cache_read"] == 40 and sums["cache_write"] == 7
    assert dict(tokens) == {k: float(v) for k, v in sums.items() if v}
    spend = total(families["parley_spend_usd"], "parley_spend_usd_total")
    assert spend == pytest.approx(sum(r["spend"] for r in rows), rel=1e-9)
    assert spend > 0

    ttft = families["parley_time_to_first_token_seconds"]
    assert total(ttft, "parley_time_to_first_token_seconds_count") == 2  # the two streams
    assert total(families["parley_request_duration_seconds"], "parley_request_duration_seconds_count") == 10
    assert (
        total(families["parley_time_per_output_token_seconds"], "parley_time_per_output_token_seconds_count")
        >= 7
    )
    attempts = families["parley_upstream_attempts"]
    assert (
        total(attempts, "parley_upstream_attempts_total", status_class="4xx", deployment="claude-limited#2")
        == 1
    )
    assert total(families["parley_requests_in_flight"], "parley_requests_in_flight") == 0


def test_a_thousand_unknown_model_names_add_no_series(metrics_gateway):
    url = metrics_gateway[0].url
    with httpx.Client(base_url=url, headers={"x-api-key": MASTER}, timeout=10) as client:

        def ask(model: str) -> int:
            body = {"model": model, "max_tokens": 8, "messages": ASK}
            return client.post("/v1/messages", json=body).status_code

        assert ask("typo-0") == 404
        before = sum(len(samples) for samples in scrape(url).values())
        assert {ask(f"typo-{i}") for i in range(1, 1001)} == {404}
    after = scrape(url)
    assert sum(len(samples) for samples in after.values()) == before
    assert not any("typo" in str(s.labels) for samples in after.values() for s in samples)


def test_metrics_key_and_instances_do_not_share_a_directory(tmp_path):
    """`metrics_require_key` guards /metrics; two instances on one host keep separate directories,
    and a restarted instance starts from an emptied one."""
    config = {
        "model_list": [{"model_name": "mock-m", "params": {"model": "mock/mock-m"}}],
        "general_settings": {"master_key": MASTER},
        "litellm_settings": {"callbacks": ["prometheus"], "metrics_require_key": True},
    }
    env = {"PARLEY_METRICS_DIR": str(tmp_path)}
    port = free_port()
    first, second = Gateway(config, env=env, port=port, workers=2), Gateway(config, env=env, workers=2)
    try:
        client = anthropic.Anthropic(base_url=first.url, api_key=MASTER, max_retries=0)
        client.messages.create(model="mock-m", max_tokens=8, messages=ASK)
        assert httpx.get(first.url + "/metrics").status_code == 401
        assert (
            total(scrape(first.url, **{"x-api-key": MASTER})["parley_requests"], "parley_requests_total") == 1
        )
        assert (
            total(scrape(second.url, **{"x-api-key": MASTER})["parley_requests"], "parley_requests_total")
            == 0
        )
        assert len(os.listdir(tmp_path)) == 2
        first.stop()
        first = Gateway(config, env=env, port=port, workers=2)  # the same instance, restarted
        assert (
            total(scrape(first.url, **{"x-api-key": MASTER})["parley_requests"], "parley_requests_total") == 0
        )
    finally:
        first.stop()
        second.stop()


def test_metrics_off_means_no_route_and_no_filter(start_inprocess):
    gw = start_inprocess({"model_list": [{"model_name": "mock-m", "params": {"model": "mock/mock-m"}}]})
    assert gw.http.get("/metrics").status_code == 404
    names = gw.app.state.gateway.pipeline.chain.names()
    assert not [n for n in names if n.startswith("metrics:")]


class _Masker(Filter):
    """A guardrail reporting what it did as the guardrails filter does: `ctx.guardrail_actions`."""

    phase = Phase.GUARDRAILS

    async def on_request(self, ctx, body):
        ctx.guardrail_actions.append(GuardrailAction("pii", "mask", "EMAIL", 2))
        if "forbidden" in str(body.get("messages")):
            ctx.guardrail_actions.append(GuardrailAction("topics", "block", "forbidden"))
            raise GatewayError(400, "blocked by the topics guardrail", "invalid_request_error")


async def test_guardrail_actions_are_counted():
    config = build_config(
        {
            "model_list": [{"model_name": "m", "params": {"model": "mock/m"}}],
            "litellm_settings": {"callbacks": ["prometheus"]},
        },
        "test",
    )
    gw = build_gateway(config, extra_filters=[_Masker()])
    app = create_app(config, gw)
    await gw.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            for text in ("hello", "hello again", "something forbidden"):
                await client.post(
                    "/v1/messages",
                    json={"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": text}]},
                )
            exposition = (await client.get("/metrics")).text
    finally:
        await gw.stop()
    samples = {f.name: f.samples for f in text_string_to_metric_families(exposition)}[
        "parley_guardrail_actions"
    ]
    assert total(samples, "parley_guardrail_actions_total", guardrail="pii", action="mask") == 6
    assert total(samples, "parley_guardrail_actions_total", guardrail="topics", action="block") == 1


def _requests_by_pid(directory: str) -> dict[int, float]:
    """parley_requests_total per worker, read from the workers' own value files."""
    out: dict[int, float] = {}
    for path in glob.glob(os.path.join(directory, "counter_*.db")):
        pid = int(path.rsplit("_", 1)[1].removesuffix(".db"))
        values = MmapedDict.read_all_values_from_file(path)
        out[pid] = sum(v for key, v, _, _ in values if json.loads(key)[1] == "parley_requests_total")
    return out


def test_a_killed_worker_keeps_its_counts_and_loses_its_live_gauges(tmp_path):
    config = {
        "model_list": [{"model_name": "mock-m", "params": {"model": "mock/mock-m"}}],
        "litellm_settings": {"callbacks": ["prometheus"]},
    }
    gw = Gateway(config, env={"PARLEY_METRICS_DIR": str(tmp_path)}, workers=2)
    try:
        [directory] = glob.glob(str(tmp_path / "parley-metrics-*"))
        body = {"model": "mock-m", "max_tokens": 8, "messages": ASK}
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda _: httpx.post(gw.url + "/v1/messages", json=body).raise_for_status(), range(24)
                )
            )
        served = {pid: n for pid, n in _requests_by_pid(directory).items() if n}
        assert sum(served.values()) == 24
        victim = max(served, key=lambda pid: served[pid])
        assert os.path.exists(os.path.join(directory, f"gauge_livesum_{victim}.db"))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while os.path.exists(os.path.join(directory, f"gauge_livesum_{victim}.db")):
            assert time.monotonic() < deadline, "no new worker dropped the dead one's live gauges"
            time.sleep(0.2)
        for _ in range(4):
            assert total(scrape(gw.url)["parley_requests"], "parley_requests_total") == 24
    finally:
        gw.stop()


def _inprocess_scrape(gw) -> dict[str, list]:
    families: dict[str, list] = defaultdict(list)
    families.update((f.name, f.samples) for f in text_string_to_metric_families(gw.http.get("/metrics").text))
    return families


def test_retries_cooldowns_and_fallbacks_are_counted(start_inprocess, upstream, b):
    config = {
        "model_list": [
            anthropic_deployment("claude-a", upstream, model="a-model", weight=1_000_000),
            anthropic_deployment("claude-a", b, model="b-model", weight=1),
            anthropic_deployment("claude-c", upstream, model="c-model"),
            anthropic_deployment("claude-d", b, model="d-model"),
        ],
        "router_settings": {
            "num_retries": 1,
            "retry_after": 0,
            "allowed_fails": 1,
            "cooldown_time": 30,
            "fallbacks": [{"claude-c": ["claude-d"]}],
        },
        "litellm_settings": {"callbacks": ["prometheus"]},
    }
    gw = start_inprocess(config)
    client = gw.anthropic(api_key="sk", max_retries=0)
    upstream.script({"status": 529}, {"status": 529}, {"status": 529})
    client.messages.create(model="claude-a", max_tokens=8, messages=ASK)  # a fails, cools down; b serves
    client.messages.create(model="claude-c", max_tokens=8, messages=ASK)  # c fails twice; d serves
    m = _inprocess_scrape(gw)
    attempts = m["parley_upstream_attempts"]
    assert total(attempts, "parley_upstream_attempts_total", deployment="claude-a#0", status_class="5xx") == 1
    assert total(attempts, "parley_upstream_attempts_total", deployment="claude-a#1", status_class="2xx") == 1
    assert total(attempts, "parley_upstream_attempts_total", deployment="claude-c#2", status_class="5xx") == 2
    assert total(attempts, "parley_upstream_attempts_total", deployment="claude-d#3", status_class="2xx") == 1
    assert total(m["parley_upstream_retries"], "parley_upstream_retries_total", model="claude-a") == 1
    assert total(m["parley_upstream_retries"], "parley_upstream_retries_total", model="claude-c") == 1
    assert (
        total(m["parley_deployment_cooldowns"], "parley_deployment_cooldowns_total", deployment="claude-a#0")
        == 1
    )
    fallbacks = m["parley_fallbacks"]
    assert total(fallbacks, "parley_fallbacks_total", model="claude-c", fallback="claude-d") == 1
    requests = m["parley_requests"]
    assert total(requests, "parley_requests_total", model="claude-d", status_class="2xx") == 1  # who served


def test_key_alias_and_team_labels_only_when_enabled(start_inprocess, tmp_path):
    config = {
        "model_list": [{"model_name": "mock-m", "params": {"model": "mock/mock-m"}}],
        "general_settings": {"master_key": MASTER, "database_url": str(tmp_path / "k.db")},
        "litellm_settings": {"callbacks": ["prometheus"], "metrics_key_labels": True},
    }
    gw = start_inprocess(config)
    admin = {"x-api-key": MASTER}
    team = gw.http.post("/team/new", json={"team_alias": "blue"}, headers=admin).json()["team_id"]
    key = gw.http.post("/key/generate", json={"key_alias": "alice", "team_id": team}, headers=admin).json()[
        "key"
    ]
    gw.anthropic(api_key=key, max_retries=0).messages.create(model="mock-m", max_tokens=8, messages=ASK)
    requests = _inprocess_scrape(gw)["parley_requests"]
    assert total(requests, "parley_requests_total", key_alias="alice", team=team) == 1
    plain = dict(config, litellm_settings={"callbacks": ["prometheus"]})
    plain["general_settings"] = {"master_key": MASTER}
    other = start_inprocess(plain)
    other.anthropic(api_key=MASTER, max_retries=0).messages.create(model="mock-m", max_tokens=8, messages=ASK)
    [sample] = [s for s in _inprocess_scrape(other)["parley_requests"] if s.name == "parley_requests_total"]
    assert "key_alias" not in sample.labels and "team" not in sample.labels
