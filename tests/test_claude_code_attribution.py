"""Claude Code's per-request attribution line (`x-anthropic-billing-header: cc_version=...;
cc_entrypoint=...; cch=...;`, first in `system`): removed on translated paths so the backend's
prefix cache holds across turns, forwarded on the native path, recorded in the spend row.

Requests shaped as Claude Code sends them, through a real `parley serve` with spend logging, by the
anthropic SDK; the fake upstream records what each backend received.
"""

from __future__ import annotations

import itertools
import os
import secrets

import anthropic
import orjson
import pytest

from keys_support import Admin
from parley.testing.procs import anthropic_deployment

MASTER = "sk-parley-master-attribution"
SYSTEM_PROMPT = "You are Claude Code, Anthropic's official CLI for Claude. " * 40


def attribution() -> str:
    return (
        f"x-anthropic-billing-header: cc_version=2.1.37.e4f; cc_entrypoint=cli; cch={secrets.token_hex(3)};"
    )


def system() -> list[dict]:
    return [
        {"type": "text", "text": attribution()},
        {"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}},
    ]


@pytest.fixture(scope="module")
def gateway(start_gateway, fake_upstream, tmp_path_factory):
    db = str(tmp_path_factory.mktemp("cc") / "p.db")
    return start_gateway(
        {
            "model_list": [
                {
                    "model_name": "local",
                    "params": {
                        "model": "hosted_vllm/qwen3-coder",
                        "api_base": fake_upstream.url + "/v1",
                        "api_key": "sk-vllm",
                    },
                },
                anthropic_deployment("native", fake_upstream, model="claude-sonnet-4-5-20250929"),
            ],
            "general_settings": {"master_key": MASTER, "database_url": db, "spend_flush_interval": 0.05},
        }
    )


@pytest.fixture
def client(gateway):
    return anthropic.Anthropic(base_url=gateway.url, api_key=MASTER, max_retries=0)


def prompt_text(body: dict) -> str:
    """What a prefix cache keys on: the prompt as the backend reads it, in order."""
    return orjson.dumps(body["messages"]).decode()


def common_prefix(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))  # noqa: RUF071 (characters are what is wanted)


def test_translated_path_keeps_the_prefix_stable_and_records_claude_code(gateway, client, upstream):
    history: list[dict] = []
    ids = []
    for turn in range(3):
        upstream.script({"api": "openai", "content": f"answer {turn}"})
        history.append({"role": "user", "content": f"question {turn}"})
        raw = client.messages.with_raw_response.create(
            model="local", max_tokens=64, system=system(), messages=history
        )
        history.append({"role": "assistant", "content": raw.parse().content[0].text})
        ids.append(raw.headers["request-id"])
    bodies = [orjson.loads(r["body"]) for r in upstream.requests() if r["path"] == "/v1/chat/completions"]
    assert len(bodies) == 3
    for body in bodies:
        assert "x-anthropic-billing-header" not in orjson.dumps(body).decode()
        assert body["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    # Each turn's prompt starts with the whole previous prompt (less its closing bracket): a prefix
    # cache reuses all of it.
    for before, after in itertools.pairwise(bodies):
        previous = prompt_text(before)
        assert common_prefix(previous, prompt_text(after)) >= len(previous) - 1
    rows = Admin(gateway.url, MASTER).wait_logs(1, request_id=ids[0])
    assert rows[0]["cc_version"] == "2.1.37.e4f" and rows[0]["cc_entrypoint"] == "cli"


def test_native_path_forwards_the_line(gateway, client, upstream):
    upstream.script({"api": "anthropic", "content": [{"type": "text", "text": "ok"}]})
    sent_system = system()
    raw = client.messages.with_raw_response.create(
        model="native", max_tokens=64, system=sent_system, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.parse().content[0].text == "ok"
    body = orjson.loads([r for r in upstream.requests() if r["path"] == "/v1/messages"][-1]["body"])
    assert body["system"] == sent_system
    rows = Admin(gateway.url, MASTER).wait_logs(1, request_id=raw.headers["request-id"])
    assert rows[0]["cc_version"] == "2.1.37.e4f"
