"""Rate limits in process: router_settings.default_limits per client key, via the anthropic SDK.
The gateway runs in process except for the streaming test, which keeps a `parley serve` process."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import time

import anthropic
import pytest

from parley.core.context import LimitSpec
from parley.filters.rate_limit import ResetTimes, rfc3339, success_headers
from parley.filters.rate_limit_store import Decision
from parley.testing.inprocess import anthropic_client
from parley.testing.procs import anthropic_deployment

MODEL = "claude-sonnet-4-5"


def client(gw, key="sk-one"):
    return anthropic_client(gw, api_key=key, max_retries=0)


def ask(c, model=MODEL):
    return c.messages.with_raw_response.create(
        model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    )


@pytest.fixture(scope="module")
def gateway(start_inprocess_module, fake_upstream):
    return start_inprocess_module(
        {
            "model_list": [
                anthropic_deployment(MODEL, fake_upstream),
                anthropic_deployment("other", fake_upstream),
            ],
            "router_settings": {"default_limits": {"rpm_limit": 3, "model_rpm_limit": {"other": 1}}},
        }
    )


def test_rpm_limit_per_key_with_headers(gateway, upstream):
    c = client(gateway, "sk-rpm")
    remaining = [ask(c).headers["anthropic-ratelimit-requests-remaining"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    with pytest.raises(anthropic.RateLimitError) as info:
        ask(c)
    error = info.value
    assert error.body["error"]["type"] == "rate_limit_error"
    headers = error.response.headers
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["anthropic-ratelimit-requests-limit"] == "3"
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    reset = dt.datetime.strptime(headers["anthropic-ratelimit-requests-reset"], "%Y-%m-%dT%H:%M:%SZ")
    assert reset.year >= 2025
    assert len(upstream.requests()) == 3
    # another key has its own budget
    assert ask(client(gateway, "sk-someone-else")).http_response.status_code == 200


def test_per_key_per_model_limit(gateway, upstream):
    c = client(gateway, "sk-model")
    ask(c, "other")
    with pytest.raises(anthropic.RateLimitError) as info:
        ask(c, "other")
    assert "key_model" in info.value.message
    assert ask(c, MODEL).http_response.status_code == 200  # other models are not limited by it


def test_tpm_limit_settled_after_the_call(start_inprocess, upstream):
    gw = start_inprocess(
        {
            "model_list": [anthropic_deployment(MODEL, upstream)],
            "router_settings": {"default_limits": {"tpm_limit": 100}},
        }
    )
    c = client(gw, "sk-tpm")
    upstream.script({"usage": {"input_tokens": 70, "output_tokens": 40}})
    first = ask(c)
    assert first.headers["anthropic-ratelimit-tokens-limit"] == "100"
    assert first.headers["anthropic-ratelimit-tokens-remaining"] == "100"  # nothing used before it
    with pytest.raises(anthropic.RateLimitError) as info:
        ask(c)
    assert info.value.response.headers["anthropic-ratelimit-tokens-remaining"] == "0"
    assert "tokens per minute" in info.value.message


def test_max_parallel_requests(start_inprocess, upstream):
    gw = start_inprocess(
        {
            "model_list": [anthropic_deployment(MODEL, upstream)],
            "router_settings": {"default_limits": {"max_parallel_requests": 1}},
        }
    )
    upstream.script({"delay": 1.5})
    c = client(gw, "sk-par")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(ask, c)
        while not upstream.requests():
            pass
        with pytest.raises(anthropic.RateLimitError):
            ask(c)
        assert slow.result().http_response.status_code == 200
    assert ask(c).http_response.status_code == 200  # released when the first finished


def test_stream_holds_its_parallel_slot_until_done(start_gateway, upstream):
    gw = start_gateway(
        {
            "model_list": [anthropic_deployment(MODEL, upstream)],
            "router_settings": {"default_limits": {"max_parallel_requests": 1}},
        }
    )
    upstream.script({"content": [{"type": "text", "text": "x " * 40}], "chunk_delay": 0.02})
    c = client(gw, "sk-stream")
    with c.messages.stream(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}]) as s:
        next(iter(s.text_stream))
        with pytest.raises(anthropic.RateLimitError):
            ask(c)
        s.until_done()
    assert ask(c).http_response.status_code == 200


def test_the_tightest_limits_are_reported_and_the_reset_names_the_window_end():
    """Several subjects (key, user, team): the headers name the one with least left, the first of
    equals; the reset is the end of the window, the same text for every request of a second."""
    specs = [
        LimitSpec("key", "k", rpm=10, tpm=1000),
        LimitSpec("user", "u", rpm=4, tpm=None),
        LimitSpec("team", "t", rpm=6, tpm=5000),
    ]
    used = [(3, 900), (2, 0), (4, 100)]  # left: rpm 7, 2, 2 (the user first); tpm 100, -, 4900
    resets = ResetTimes()
    wait_ms = 60_000 - int(time.time() * 1000) % 60_000
    headers = success_headers(specs, Decision(True, wait_ms=wait_ms, used=used), resets.at(wait_ms))
    assert headers["anthropic-ratelimit-requests-limit"] == "4"
    assert headers["anthropic-ratelimit-requests-remaining"] == "2"
    assert headers["anthropic-ratelimit-tokens-limit"] == "1000"
    assert headers["anthropic-ratelimit-tokens-remaining"] == "100"
    reset = headers["anthropic-ratelimit-requests-reset"]
    assert reset == headers["anthropic-ratelimit-tokens-reset"]
    assert reset in (rfc3339(wait_ms), rfc3339(wait_ms - 1000))  # (a second may turn meanwhile)
    assert reset.endswith(":00Z")  # the next minute starts the window again
    over = success_headers(specs[:1], Decision(True, wait_ms=wait_ms, used=[(12, 2000)]), "r")
    assert over["anthropic-ratelimit-requests-remaining"] == "0"  # never negative
    assert over["anthropic-ratelimit-tokens-remaining"] == "0"
    assert success_headers([LimitSpec("key", "k", max_parallel=2)], Decision(True, used=[(1, 0)]), "r") == {}
