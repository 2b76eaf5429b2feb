"""The in-process SDK's Anthropic interface, against the fake upstream on loopback."""

from __future__ import annotations

import anthropic
import pytest

import parley
from parley import errors


def hi(model: str, **kw):
    return dict(model=model, max_tokens=32, messages=[{"role": "user", "content": "hi sdk"}], **kw)


async def test_acreate_anthropic_validates_as_sdk_message(upstream):
    msg = await parley.messages.acreate(
        **hi("anthropic/claude-haiku-4-5"), api_key="sk-ant-x", api_base=upstream.url
    )
    assert msg.content[0].text == "Hello! You said: hi sdk"
    assert msg["content"][0]["text"] == msg.content[0].text
    assert anthropic.types.Message.model_validate(msg).stop_reason == "end_turn"
    seen = upstream.requests()[-1]
    assert seen["headers"]["x-api-key"] == "sk-ant-x"
    assert upstream.last_body()["model"] == "claude-haiku-4-5"


def test_create_sync_and_env_defaults(upstream, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", upstream.url)
    msg = parley.anthropic.messages.create(**hi("anthropic/claude-haiku-4-5"))
    assert msg.usage.output_tokens > 0
    assert upstream.requests()[-1]["headers"]["x-api-key"] == "sk-ant-env"


async def test_stream_events_accumulate_with_the_anthropic_sdk(upstream):
    upstream.script(
        {
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig-1"},
                {"type": "text", "text": "streamed by parley"},
            ]
        }
    )
    events = await parley.messages.acreate(
        **hi("anthropic/claude-haiku-4-5", stream=True), api_key="k", api_base=upstream.url
    )
    collected = [e async for e in events]
    names = [e.type for e in collected]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    from anthropic.lib.streaming._messages import accumulate_event
    from anthropic.types import RawMessageStreamEvent
    from pydantic import TypeAdapter

    adapter = TypeAdapter(RawMessageStreamEvent)
    snapshot, bufs = None, {}
    for event in collected:
        snapshot = accumulate_event(
            event=adapter.validate_python(event), current_snapshot=snapshot, json_bufs=bufs
        )
    assert snapshot.content[0].signature == "sig-1"
    assert snapshot.content[1].text == "streamed by parley"


def test_sync_stream(upstream):
    text = "".join(
        e.delta.text
        for e in parley.messages.create(
            **hi("anthropic/claude-x", stream=True), api_key="k", api_base=upstream.url
        )
        if e.type == "content_block_delta"
    )
    assert text == "Hello! You said: hi sdk"


@pytest.mark.parametrize(
    "status, exc",
    [
        (400, errors.BadRequestError),
        (401, errors.AuthenticationError),
        (429, errors.RateLimitError),
        (529, errors.OverloadedError),
        (500, errors.InternalServerError),
    ],
)
async def test_errors_are_typed(upstream, status, exc):
    upstream.script({"status": status, "error": {"message": f"scripted {status}"}})
    with pytest.raises(exc) as info:
        await parley.messages.acreate(
            **hi("anthropic/claude-x"), api_key="k", api_base=upstream.url, num_retries=0
        )
    assert info.value.status_code == status and info.value.message == f"scripted {status}"


async def test_connection_error_and_bad_model():
    from parley.testing.procs import free_port

    with pytest.raises(errors.APIConnectionError):
        await parley.messages.acreate(
            **hi("anthropic/claude-x"), api_key="k", api_base=f"http://127.0.0.1:{free_port()}"
        )
    with pytest.raises(errors.BadRequestError, match="provider/name"):
        await parley.messages.acreate(**hi("claude-x"))


async def test_router_with_config(upstream):
    router = parley.Router(
        {
            "model_list": [
                {
                    "model_name": "fast",
                    "params": {
                        "model": "anthropic/claude-haiku-4-5",
                        "api_key": "k",
                        "api_base": upstream.url,
                    },
                },
                {"model_name": "offline", "params": {"model": "mock/parley-mock"}},
            ]
        }
    )
    try:
        assert (await router.messages.acreate(**hi("fast"))).content[0].text == "Hello! You said: hi sdk"
        assert "hi sdk" in (await router.messages.acreate(**hi("offline"))).content[0].text
        with pytest.raises(errors.NotFoundError):
            await router.messages.acreate(**hi("nope"))
    finally:
        await router.aclose()
