"""`GET /health`: every deployment checked with a one-token request, LiteLLM's shape, cached."""

from __future__ import annotations

import orjson

from parley.testing.procs import anthropic_deployment, free_port, openai_deployment

MASTER = "sk-master-health"


def test_health_checks_each_deployment_once_per_interval(start_inprocess, upstream, b):
    dead = anthropic_deployment("claude-dead", upstream, model="dead-model")
    dead["params"]["api_base"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = {
        "model_list": [
            anthropic_deployment("claude-ok", upstream, model="ok-model"),
            dead,
            openai_deployment("gpt-ok", b, model="gpt-up"),
            {"model_name": "anthropic/*", "params": {"model": "anthropic/*", "api_base": upstream.url}},
            {"model_name": "mock-m", "params": {"model": "mock/mock-m"}},
        ],
        "general_settings": {"master_key": MASTER, "health_check_interval": 60},
    }
    gw = start_inprocess(config)
    assert gw.http.get("/health").status_code == 401
    assert gw.http.get("/health/liveness").json() == {"status": "healthy"}
    assert upstream.requests() == []  # nothing is checked before someone asks
    report = gw.http.get("/health", headers={"x-api-key": MASTER}).json()
    assert report["healthy_count"] == 3 and report["unhealthy_count"] == 1
    assert {e["model_name"] for e in report["healthy_endpoints"]} == {"claude-ok", "gpt-ok", "mock-m"}
    [bad] = report["unhealthy_endpoints"]
    assert bad["model"] == "anthropic/dead-model" and bad["model_id"] == "claude-dead#1"
    assert "unreachable" in bad["error"]
    assert report["not_checked"] == ["anthropic/*#3"]
    [probe] = upstream.requests()
    assert probe["headers"]["x-api-key"] == "sk-ant-upstream-real"
    assert orjson.loads(probe["body"]) == {
        "model": "ok-model",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": "ping"}],
    }
    assert orjson.loads(b.requests()[0]["body"])["model"] == "gpt-up"
    again = gw.http.get("/health", headers={"authorization": f"Bearer {MASTER}"}).json()
    assert again == report  # cached: no new probe
    assert len(upstream.requests()) == 1


def test_an_upstream_error_makes_a_deployment_unhealthy(start_inprocess, upstream):
    upstream.script(
        {"status": 401, "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
    )
    gw = start_inprocess({"model_list": [anthropic_deployment("claude-ok", upstream, model="ok-model")]})
    report = gw.http.get("/health").json()  # no master key configured: open, like the rest
    assert report["healthy_count"] == 0
    assert report["unhealthy_endpoints"][0]["error"].startswith("HTTP 401: invalid x-api-key")
