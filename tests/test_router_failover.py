"""Retries, failover, cooldowns, timeouts and fallbacks, against real fake upstreams, via the anthropic SDK
(gateway in process: parley.testing.inprocess)."""

from __future__ import annotations

import time

import anthropic
import orjson
import pytest

from parley.testing.procs import anthropic_deployment, free_port

MODEL = "claude-sonnet-4-5"
ASK = [{"role": "user", "content": "ping"}]


def client_for(gw) -> anthropic.Anthropic:
    return gw.anthropic(api_key="sk-test", max_retries=0)


def create(client, model=MODEL, **kw):
    return client.messages.with_raw_response.create(model=model, max_tokens=32, messages=ASK, **kw)


def pair(upstream, b, name=MODEL, a_params=None, b_params=None):
    """Two deployments of `name`; the first is (almost) always picked first (weight)."""
    return [
        anthropic_deployment(name, upstream, model="a-model", weight=1_000_000, **(a_params or {})),
        anthropic_deployment(name, b, model="b-model", weight=1, **(b_params or {})),
    ]


def ids(config):
    return [f"{d['model_name']}#{i}" for i, d in enumerate(config["model_list"])]


def test_failover_to_second_deployment_on_529(start_inprocess, upstream, b):
    gw = start_inprocess({"model_list": pair(upstream, b), "router_settings": {"num_retries": 2}})
    upstream.script({"status": 529})
    raw = create(client_for(gw))
    message = raw.parse()
    assert message.content[0].text == "Hello! You said: ping"
    assert raw.headers["x-parley-attempts"] == "2"
    assert raw.headers["x-parley-deployment"] == f"{MODEL}#1"
    assert orjson.loads(b.requests()[-1]["body"])["model"] == "b-model"
    assert len(upstream.requests()) == 1


def test_one_of_two_deployments_down_clients_see_no_errors(start_inprocess, upstream, b):
    dead = anthropic_deployment(MODEL, upstream, model="a-model", weight=1)
    dead["params"]["api_base"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = {
        "model_list": [dead, anthropic_deployment(MODEL, b, model="b-model", weight=1)],
        "router_settings": {"num_retries": 1, "allowed_fails": 2, "cooldown_time": 30},
    }
    gw = start_inprocess(config)
    client = client_for(gw)
    served = [create(client).headers["x-parley-deployment"] for _ in range(12)]
    assert set(served) == {f"{MODEL}#1"}
    assert len(b.requests()) == 12


def test_retry_same_deployment_honours_retry_after(start_inprocess, upstream):
    gw = start_inprocess(
        {
            "model_list": [anthropic_deployment(MODEL, upstream)],
            "router_settings": {"num_retries": 2, "allowed_fails": 5},
        }
    )
    upstream.script({"status": 429, "headers": {"retry-after": "1"}})
    started = time.monotonic()
    raw = create(client_for(gw))
    elapsed = time.monotonic() - started
    assert raw.parse().content[0].text == "Hello! You said: ping"
    assert raw.headers["x-parley-attempts"] == "2"
    assert elapsed >= 1.0
    times = [r["time"] for r in upstream.requests()]
    assert len(times) == 2 and times[1] - times[0] >= 0.95


def test_retries_exhausted_return_the_upstream_error(start_inprocess, upstream):
    gw = start_inprocess(
        {
            "model_list": [anthropic_deployment(MODEL, upstream, num_retries=1)],
            "router_settings": {"num_retries": 5, "allowed_fails": 10, "retry_backoff_initial": 0.05},
        }
    )
    upstream.script(*[{"status": 500, "error": {"type": "api_error", "message": "boom"}}] * 3)
    with pytest.raises(anthropic.InternalServerError) as info:
        create(client_for(gw))
    assert "boom" in info.value.message
    assert info.value.response.headers["x-parley-attempts"] == "2"  # per-model num_retries wins
    assert len(upstream.requests()) == 2


def test_client_errors_are_not_retried(start_inprocess, upstream, b):
    gw = start_inprocess({"model_list": pair(upstream, b)})
    upstream.script({"status": 400, "error": {"type": "invalid_request_error", "message": "bad field"}})
    with pytest.raises(anthropic.BadRequestError) as info:
        create(client_for(gw))
    assert info.value.response.headers["x-parley-attempts"] == "1"
    assert b.requests() == []


def test_cooldown_skips_then_retries_deployment(start_inprocess, upstream, b):
    config = {"model_list": pair(upstream, b), "router_settings": {"allowed_fails": 1, "cooldown_time": 1.5}}
    gw = start_inprocess(config)
    client = client_for(gw)
    upstream.script({"status": 500})
    assert create(client).headers["x-parley-deployment"] == f"{MODEL}#1"
    for _ in range(5):  # A is cooling down: not even tried
        assert create(client).headers["x-parley-attempts"] == "1"
    assert len(upstream.requests()) == 1
    time.sleep(1.7)
    assert create(client).headers["x-parley-deployment"] == f"{MODEL}#0"
    assert len(upstream.requests()) == 2


def test_all_deployments_cooling_is_529_with_retry_after(start_inprocess, upstream):
    gw = start_inprocess(
        {
            "model_list": [anthropic_deployment(MODEL, upstream), anthropic_deployment(MODEL, upstream)],
            "router_settings": {"num_retries": 0, "allowed_fails": 1, "cooldown_time": 20},
        }
    )
    client = client_for(gw)
    upstream.script({"status": 503}, {"status": 503})
    for _ in range(2):  # one failure each cools both deployments down
        with pytest.raises(anthropic.APIStatusError) as first:
            create(client)
        assert first.value.status_code == 503
    with pytest.raises(anthropic.OverloadedError) as info:
        create(client)
    assert info.value.status_code == 529
    assert info.value.body["error"]["type"] == "overloaded_error"
    assert 1 <= int(info.value.response.headers["retry-after"]) <= 20
    assert len(upstream.requests()) == 2


def test_a_lone_deployment_never_cools_down(start_inprocess, upstream):
    gw = start_inprocess(
        {
            "model_list": [anthropic_deployment(MODEL, upstream)],
            "router_settings": {"num_retries": 0, "allowed_fails": 1, "cooldown_time": 20},
        }
    )
    client = client_for(gw)
    upstream.script({"status": 503})
    with pytest.raises(anthropic.APIStatusError):
        create(client)
    assert create(client).status_code == 200  # tried again at once: nothing else could serve it


def test_timeout_fails_over(start_inprocess, upstream, b):
    gw = start_inprocess({"model_list": pair(upstream, b, a_params={"timeout": 0.5})})
    upstream.script({"delay": 3})
    started = time.monotonic()
    raw = create(client_for(gw))
    assert raw.headers["x-parley-deployment"] == f"{MODEL}#1"
    assert time.monotonic() - started < 2.5


def test_fallback_to_another_model_group(start_inprocess, upstream, b):
    config = {
        "model_list": [
            anthropic_deployment(MODEL, upstream, model="primary-model"),
            anthropic_deployment("backup", b, model="backup-model"),
        ],
        "router_settings": {
            "num_retries": 1,
            "retry_backoff_initial": 0.05,
            "fallbacks": [{MODEL: ["backup"]}],
        },
    }
    gw = start_inprocess(config)
    upstream.script({"status": 529}, {"status": 529})
    raw = create(client_for(gw))
    assert raw.parse().content[0].text == "Hello! You said: ping"
    assert raw.headers["x-parley-fallback"] == "backup"
    assert raw.headers["x-parley-attempts"] == "3"
    assert orjson.loads(b.requests()[-1]["body"])["model"] == "backup-model"


def test_context_window_fallback(start_inprocess, upstream, b):
    too_long = {
        "status": 400,
        "error": {
            "type": "invalid_request_error",
            "message": "prompt is too long: 250000 tokens > 200000 maximum",
        },
    }
    config = {
        "model_list": [anthropic_deployment(MODEL, upstream), anthropic_deployment("big", b)],
        "router_settings": {
            "context_window_fallbacks": [{MODEL: ["big"]}],
            "fallbacks": [{MODEL: ["nonexistent"]}],
        },
    }
    gw = start_inprocess(config)
    upstream.script(too_long)
    raw = create(client_for(gw))
    assert raw.headers["x-parley-fallback"] == "big"
    assert raw.headers["x-parley-attempts"] == "2"
    # without a context-window fallback the client sees the upstream's 400 untouched
    gw2 = start_inprocess(
        {
            "model_list": [anthropic_deployment(MODEL, upstream)],
            "router_settings": {"fallbacks": [{MODEL: ["big"]}]},
        }
    )
    upstream.script(too_long)
    with pytest.raises(anthropic.BadRequestError) as info:
        create(client_for(gw2))
    assert "prompt is too long" in info.value.message


def test_content_policy_fallback(start_inprocess, upstream, b):
    config = {
        "model_list": [anthropic_deployment(MODEL, upstream), anthropic_deployment("lenient", b)],
        "router_settings": {"content_policy_fallbacks": [{MODEL: ["lenient"]}]},
    }
    gw = start_inprocess(config)
    upstream.script(
        {
            "status": 400,
            "error": {
                "type": "invalid_request_error",
                "message": "Output blocked by content filtering policy (content_policy_violation)",
            },
        }
    )
    assert create(client_for(gw)).headers["x-parley-fallback"] == "lenient"


def test_cross_protocol_fallback(start_inprocess, upstream, b):
    from parley.testing.procs import openai_deployment

    config = {
        "model_list": [anthropic_deployment(MODEL, upstream), openai_deployment("gpt-4o", b)],
        "router_settings": {"num_retries": 0, "fallbacks": [{MODEL: ["gpt-4o"]}]},
    }
    gw = start_inprocess(config)
    upstream.script({"status": 529})
    raw = create(client_for(gw))
    assert raw.headers["x-parley-fallback"] == "gpt-4o"
    assert raw.parse().content[0].type == "text"
    assert b.requests()[-1]["path"].endswith("/chat/completions")


def test_fallback_works_for_every_request_not_just_the_first(start_inprocess, upstream, b):
    gw = start_inprocess(
        {
            "model_list": [anthropic_deployment(MODEL, upstream), anthropic_deployment("spare", b)],
            "router_settings": {"num_retries": 0, "fallbacks": [{MODEL: ["spare"]}]},
        }
    )
    client = client_for(gw)
    for _ in range(3):
        upstream.script({"status": 529})
        raw = create(client)
        assert raw.headers["x-parley-fallback"] == "spare"
