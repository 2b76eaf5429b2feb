"""/v1/chat/completions in front of an OpenAI-protocol upstream: bytes forwarded, model rewritten."""

from __future__ import annotations

import time

import openai
import orjson
import pytest

from parley.testing.procs import openai_deployment

MASTER = "sk-parley-master-native"


@pytest.fixture(scope="module")
def gateway(start_gateway, fake_upstream):
    return start_gateway(
        {
            "model_list": [openai_deployment("gpt-fast", fake_upstream, model="gpt-4o-mini-2024-07-18")],
            "general_settings": {"master_key": MASTER},
            "router_settings": {"num_retries": 0},  # each error test sees one failure as it is
        }
    )


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER, max_retries=0)


def test_forwarded_with_model_rewritten_and_key_swapped(client, upstream):
    completion = client.chat.completions.create(
        model="gpt-fast", n=2, seed=7, messages=[{"role": "user", "content": "ping"}]
    )
    assert completion.choices[0].message.content
    seen = upstream.requests()[-1]
    assert seen["path"] == "/v1/chat/completions"
    body = orjson.loads(seen["body"])
    assert body["model"] == "gpt-4o-mini-2024-07-18"
    assert (body["n"], body["seed"]) == (2, 7)  # nothing the backend understands is dropped
    assert seen["headers"]["authorization"] == "Bearer sk-openai-upstream-real"
    assert MASTER not in str(seen["headers"])


def test_stream_relayed(client, upstream):
    chunks = list(
        client.chat.completions.create(
            model="gpt-fast",
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "stream me"}],
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_upstream_error_passes_through(client, upstream):
    upstream.script({"api": "openai", "status": 429, "error": {"message": "slow down"}})
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-fast", messages=[{"role": "user", "content": "x"}])


def test_stream_without_usage_request_is_still_accounted(gateway, client, upstream):
    """parley asks the server for usage (for spend), and keeps that chunk from a client that did
    not ask for it: every chunk it sees has a choice, as it would from OpenAI."""
    upstream.script(
        {
            "api": "openai",
            "content": "counted words",
            "usage": {"prompt_tokens": 321, "completion_tokens": 45},
        }
    )
    chunks = list(
        client.chat.completions.create(
            model="gpt-fast", stream=True, messages=[{"role": "user", "content": "count"}]
        )
    )
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "counted words"
    sent = orjson.loads(upstream.requests()[-1]["body"])
    assert sent["stream_options"] == {"include_usage": True}
    deadline = time.monotonic() + 5
    while '"input_tokens":321' not in gateway.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(ln for ln in gateway.log().splitlines() if '"input_tokens":321' in ln)
    assert '"output_tokens":45' in line
