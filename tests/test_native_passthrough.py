"""Claude Code-shaped traffic reaches the upstream unchanged but for `model`; streams are relayed live."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import anthropic
import orjson
import pytest

from parley.testing.procs import anthropic_deployment

BETAS = (
    "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,"
    "per-turn-control-2026-07-01,effort-2025-11-24"
)


@pytest.fixture(scope="module")
def gateway(start_gateway, fake_upstream):
    return start_gateway(
        {
            "model_list": [
                anthropic_deployment("claude-opus-5-5", fake_upstream, model="claude-opus-5-5-20261101"),
                anthropic_deployment("claude-same", fake_upstream, model="claude-same"),
            ],
            "general_settings": {"stream_ping_interval": 0.3},
        }
    )


def claude_code_body(model: str) -> dict:
    """A body shaped like the reference's Appendix A capture, about 50 KB."""
    tools = [
        {
            "name": name,
            "description": f"The {name} tool. " + "Details. " * 600,
            "input_schema": {
                "type": "object",
                "properties": {"command": {"type": "string"}, "description": {"type": "string"}},
                "required": ["command"],
                "additionalProperties": False,
            },
            **({"cache_control": {"type": "ephemeral"}} if name == "Write" else {}),
        }
        for name in ("Agent", "Bash", "Edit", "Read", "Write", "Skill", "ToolSearch")
    ]
    return {
        "model": model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                    {"type": "text", "text": "say hi", "cache_control": {"type": "ephemeral"}},
                ],
            },
            {"role": "system", "content": "Mid-conversation instruction: be brief."},
        ],
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.328; cc_entrypoint=cli;"},
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Env: linux. " * 500, "cache_control": {"type": "ephemeral"}},
        ],
        "tools": tools,
        "metadata": {"user_id": json.dumps({"device_id": "d1", "account_uuid": "", "session_id": "s1"})},
        "max_tokens": 128000,
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "medium"},
        "some_future_field": {"nested": [1, 2.5, None, True]},
        "stream": True,
    }


HEADERS = {
    "anthropic-version": "2023-06-01",
    "anthropic-beta": BETAS,
    "x-api-key": "sk-client",
    "x-app": "cli",
    "user-agent": "claude-cli/2.1.328 (external, sdk-cli)",
    "x-claude-code-session-id": "s1",
    "content-type": "application/json",
}


async def _post(url: str, body: bytes) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=HEADERS) as r:
        return r.status, await r.read()


def test_claude_code_request_arrives_unchanged_but_model(gateway, upstream):
    body = claude_code_body("claude-opus-5-5")
    raw = json.dumps(body).encode()
    assert len(raw) > 45_000
    status, stream = asyncio.run(_post(gateway.url + "/v1/messages?beta=true", raw))
    assert status == 200 and b"event: message_stop" in stream
    seen = upstream.requests()[-1]
    assert seen["path"] == "/v1/messages" and seen["query"] == "beta=true"
    received = orjson.loads(seen["body"])
    assert received == dict(body, model="claude-opus-5-5-20261101")
    assert list(received) == list(body)  # key order survives
    assert list(received["tools"][0]["input_schema"]) == list(body["tools"][0]["input_schema"])
    for name in ("anthropic-beta", "anthropic-version", "x-app", "user-agent", "x-claude-code-session-id"):
        assert seen["headers"][name] == HEADERS[name]
    assert seen["headers"]["x-api-key"] == "sk-ant-upstream-real"


def test_unchanged_model_forwards_the_exact_bytes(gateway, upstream):
    raw = json.dumps(claude_code_body("claude-same"), indent=1, ensure_ascii=True).encode()
    asyncio.run(_post(gateway.url + "/v1/messages?beta=true", raw))
    assert upstream.requests()[-1]["body"].encode() == raw


def test_ping_sent_during_upstream_silence(gateway, upstream):
    upstream.script({"content": [{"type": "text", "text": "after a pause"}], "silence": 1.0})
    client = anthropic.Anthropic(base_url=gateway.url, api_key="k", max_retries=0)
    with client.messages.with_streaming_response.create(
        model="claude-same", max_tokens=20, stream=True, messages=[{"role": "user", "content": "wait"}]
    ) as response:
        text = response.read().decode()
    assert text.count("event: ping") >= 2
    assert text.index("event: message_start") < text.index("event: ping")
    upstream.script({"content": [{"type": "text", "text": "after a pause"}], "silence": 0.7})
    with client.messages.stream(
        model="claude-same", max_tokens=20, messages=[{"role": "user", "content": "wait"}]
    ) as stream:
        assert stream.get_final_message().content[0].text == "after a pause"


async def _read_then_drop(url: str, chunks: int) -> float:
    body = orjson.dumps(
        {
            "model": "claude-same",
            "max_tokens": 100,
            "stream": True,
            "messages": [{"role": "user", "content": "long story"}],
        }
    )
    session = aiohttp.ClientSession()
    response = await session.post(url, data=body, headers=HEADERS)
    for _ in range(chunks):
        await response.content.readany()
    response.close()
    await session.close()
    return time.monotonic()


def test_client_disconnect_closes_upstream(gateway, upstream):
    upstream.script({"content": [{"type": "text", "text": "word " * 200}], "piece": 5, "chunk_delay": 0.05})
    dropped_at = asyncio.run(_read_then_drop(gateway.url + "/v1/messages", 3))
    deadline = dropped_at + 3
    events: list[dict] = []
    while time.monotonic() < deadline:
        events = upstream.events()
        if events:
            break
        time.sleep(0.05)
    assert events and events[0].get("stream_aborted"), events
    assert events[0]["events"] < 100  # far from the ~200 the full reply has
