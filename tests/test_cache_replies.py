"""The response cache: exact-match hits, streamed replays, controls, and a cache shared via Redis."""

from __future__ import annotations

import uuid

import anthropic
import orjson
import pytest

from parley.testing.procs import anthropic_deployment

MODEL = "claude-sonnet-4-5"


def ask(gw, text="what is 2+2?", **kw):
    c = anthropic.Anthropic(base_url=gw.url, api_key=kw.pop("key", "sk-a"), max_retries=0)
    return c.messages.with_raw_response.create(
        model=kw.pop("model", MODEL), max_tokens=32, messages=[{"role": "user", "content": text}], **kw
    )


def access_lines(gw) -> list[dict]:
    return [
        orjson.loads(line[line.index("{") :]) for line in gw.log().splitlines() if "parley.access" in line
    ]


@pytest.fixture(scope="module")
def gateway(start_gateway, fake_upstream):
    return start_gateway(
        {
            "model_list": [
                anthropic_deployment(MODEL, fake_upstream),
                anthropic_deployment("uncached", fake_upstream, cache=False),
            ],
            "litellm_settings": {"cache": True, "cache_params": {"type": "local", "ttl": 600}},
        }
    )


def test_repeat_is_served_from_cache_at_zero_usage(gateway, upstream):
    text = f"question {uuid.uuid4()}"
    first = ask(gateway, text)
    assert first.headers["x-parley-cache"] == "miss"
    second = ask(gateway, text, key="sk-another-key", metadata={"user_id": "someone-else"})
    assert second.headers["x-parley-cache"] == "hit"
    assert "x-parley-deployment" not in second.headers
    assert second.parse().content[0].text == first.parse().content[0].text
    assert second.parse().id != first.parse().id
    assert len(upstream.requests()) == 1
    hit_log = access_lines(gateway)[-1]
    assert hit_log["input_tokens"] == 0 and hit_log["output_tokens"] == 0
    assert access_lines(gateway)[-2]["input_tokens"] > 0


def test_what_shapes_the_reply_is_in_the_key(gateway, upstream):
    text = f"question {uuid.uuid4()}"
    ask(gateway, text)
    assert ask(gateway, text, extra_body={"temperature": 0.5}).headers["x-parley-cache"] == "miss"
    assert ask(gateway, text, system="be brief").headers["x-parley-cache"] == "miss"
    assert ask(gateway, text + "!").headers["x-parley-cache"] == "miss"
    assert ask(gateway, text, extra_body={"temperature": 0.5}).headers["x-parley-cache"] == "hit"
    assert len(upstream.requests()) == 4


def test_stream_is_cached_and_replayed_as_a_valid_stream(gateway, upstream):
    text = f"stream {uuid.uuid4()}"
    upstream.script(
        {
            "content": [
                {"type": "text", "text": "an answer in many small pieces, " * 3},
                {"type": "tool_use", "name": "calc", "input": {"expr": "2+2"}},
            ]
        }
    )
    c = anthropic.Anthropic(base_url=gateway.url, api_key="sk-a", max_retries=0)
    kw = dict(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": text}],
        tools=[{"name": "calc", "input_schema": {"type": "object"}}],
    )
    with c.messages.stream(**kw) as s:
        original = s.get_final_message()
        assert s.response.headers["x-parley-cache"] == "miss"
    with c.messages.stream(**kw) as s:
        pieces = list(s.text_stream)
        replay = s.get_final_message()
        assert s.response.headers["x-parley-cache"] == "hit"
    assert len(pieces) > 1
    assert replay.content[0].text == original.content[0].text
    assert replay.content[1].input == {"expr": "2+2"}
    assert replay.stop_reason == "tool_use"
    plain = c.messages.with_raw_response.create(**kw)  # the streamed entry serves JSON too
    assert plain.headers["x-parley-cache"] == "hit"
    assert plain.parse().content[1].name == "calc"
    assert len(upstream.requests()) == 1


def test_request_cache_controls(gateway, upstream):
    text = f"controls {uuid.uuid4()}"
    ask(gateway, text, extra_headers={"cache-control": "no-store"})
    assert ask(gateway, text, extra_headers={"cache-control": "no-cache"}).headers["x-parley-cache"] == "miss"
    assert ask(gateway, text).headers["x-parley-cache"] == "hit"  # stored by the no-cache request
    other = f"meta {uuid.uuid4()}"
    ask(gateway, other, extra_body={"litellm_metadata": {"cache": {"no-store": True}}})
    assert "litellm_metadata" not in orjson.loads(upstream.requests()[-1]["body"])
    assert ask(gateway, other).headers["x-parley-cache"] == "miss"
    assert len(upstream.requests()) == 4


def test_per_request_ttl(gateway, upstream):
    import time

    text = f"ttl {uuid.uuid4()}"
    # 3 s: a request on a loaded CI machine has taken over 1 s, so a 1 s entry expired before the hit
    ask(gateway, text, extra_body={"litellm_metadata": {"cache": {"ttl": 3}}})
    stored = time.monotonic()
    assert ask(gateway, text).headers["x-parley-cache"] == "hit"
    time.sleep(max(0.0, stored + 3.3 - time.monotonic()))
    assert ask(gateway, text).headers["x-parley-cache"] == "miss"


def test_model_can_opt_out(gateway, upstream):
    text = f"opt-out {uuid.uuid4()}"
    ask(gateway, text, model="uncached")
    assert "x-parley-cache" not in ask(gateway, text, model="uncached").headers
    assert len(upstream.requests()) == 2


def test_errors_are_not_cached(gateway, upstream):
    text = f"error {uuid.uuid4()}"
    upstream.script({"status": 400, "error": {"type": "invalid_request_error", "message": "nope"}})
    with pytest.raises(anthropic.BadRequestError):
        ask(gateway, text)
    assert ask(gateway, text).headers["x-parley-cache"] == "miss"


def test_cache_shared_by_two_instances_through_redis(start_gateway, upstream):
    config = {
        "model_list": [anthropic_deployment(MODEL, upstream)],
        "router_settings": {"redis_key_prefix": f"parley-test-{uuid.uuid4().hex}"},
        "litellm_settings": {
            "cache": True,
            "cache_params": {"type": "redis", "url": "redis://127.0.0.1:6379/0", "ttl": 60},
        },
    }
    one, two = start_gateway(config), start_gateway(config)
    text = f"shared {uuid.uuid4()}"
    written = ask(one, text)
    assert written.headers["x-parley-cache"] == "miss"
    import time

    for _ in range(50):  # the write is in the background: give it a moment
        served = ask(two, text)
        if served.headers["x-parley-cache"] == "hit":
            break
        time.sleep(0.05)
    assert served.headers["x-parley-cache"] == "hit"
    assert served.parse().content[0].text == written.parse().content[0].text
