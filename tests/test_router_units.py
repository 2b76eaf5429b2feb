"""Small pure parts of the router: retry-after parsing, failure classes, sessions, settings."""

from __future__ import annotations

import email.utils
import time

import pytest

from parley.config import ConfigError
from parley.core.context import RequestContext
from parley.pipeline.metadata import apply_request_metadata
from parley.router.outcome import classify, retry_after
from parley.router.run import _session
from parley.router.settings import RouterSettings


def test_retry_after_forms():
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after({"retry-after": "2.5"}) == 2.5
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= retry_after({"retry-after": date}) <= 31
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None


@pytest.mark.parametrize(
    "status,body,kind",
    [
        (200, b"", "ok"),
        (429, b"", "retry"),
        (529, b"", "retry"),
        (408, b"", "retry"),
        (409, b"", "retry"),
        (503, b"", "retry"),
        (401, b"", "fatal"),
        (400, b'{"error":{"message":"bad"}}', "fatal"),
        (400, b'{"error":{"message":"prompt is too long: 9 tokens > 8 maximum"}}', "context_window"),
        (400, b'{"error":{"code":"context_length_exceeded"}}', "context_window"),
        (400, b'{"error":{"code":"content_policy_violation"}}', "content_policy"),
    ],
)
def test_classify(status, body, kind):
    assert classify(status, body, {}) == kind


def test_should_retry_false_is_final():
    assert classify(529, b"", {"x-should-retry": "false"}) == "fatal"


def test_session_key_sources():
    def session(headers, body):
        ctx = RequestContext(api="anthropic", route="/v1/messages", headers=headers)
        apply_request_metadata(ctx, body)
        return _session(ctx)

    assert session({"x-claude-code-session-id": "abc"}, {"metadata": {"user_id": "u"}}) == "abc"
    assert session({}, {"metadata": {"user_id": '{"device_id":"d","session_id":"s1"}'}}) == "s1"
    assert session({}, {"metadata": {"user_id": "user_ab12_account_x_session_9f"}}) == "9f"
    assert session({}, {"metadata": {"user_id": "plain-user"}}) == "plain-user"
    assert session({}, {"messages": []}) is None


def test_settings_names_and_errors():
    s = RouterSettings.from_config(
        {"routing_strategy": "latency-based-routing", "fallbacks": [{"a": ["b"]}, {"*": "c"}]}
    )
    assert s.strategy == "latency-based"
    assert s.fallbacks_for("retry", "a") == ["b"] and s.fallbacks_for("retry", "z") == ["c"]
    assert s.fallbacks_for("context_window", "a") == []
    with pytest.raises(ConfigError, match="routing_strategy"):
        RouterSettings.from_config({"routing_strategy": "fastest"})
    with pytest.raises(ConfigError, match="fallbacks"):
        RouterSettings.from_config({"fallbacks": "gpt-4o"})
    with pytest.raises(ConfigError, match="num_retries"):
        RouterSettings.from_config({"num_retries": -1})
