"""Local OpenAI-compatible servers (llama.cpp, vLLM, Ollama) behind `/v1/messages`, each played by
the fake upstream's server flavour (src/parley/testing/fake_servers.py): which output-limit field
it reads, whether a stream reports usage, one token per chunk.

A real `parley serve` with spend logging; the official anthropic SDK as the client.
"""

from __future__ import annotations

import anthropic
import orjson
import pytest

from keys_support import Admin
from parley.testing.fake_servers import tokens

MASTER = "sk-parley-master-local"
LONG = "The quick brown fox jumps over the lazy dog near the riverbank at dawn, " * 8

# (model name, provider prefix, fake flavour, whether a stream reports usage)
SERVERS = [
    ("llama-via-openai", "openai", "llamacpp", False),
    ("llama", "llamacpp", "llamacpp", False),
    ("vllm", "hosted_vllm", "vllm", True),
    ("ollama", "ollama_chat", "ollama", True),
    ("ollama-via-openai", "openai", "ollama", True),
]


@pytest.fixture(scope="module")
def gateway(start_gateway, fake_upstream, tmp_path_factory):
    models = [
        {
            "model_name": name,
            "params": {
                "model": f"{prefix}/local-model",
                "api_base": fake_upstream.url + "/v1",
                "api_key": "x",
            },
        }
        for name, prefix, _, _ in SERVERS
    ]
    db = str(tmp_path_factory.mktemp("local") / "p.db")
    return start_gateway(
        {
            "model_list": models,
            "general_settings": {"master_key": MASTER, "database_url": db, "spend_flush_interval": 0.05},
            "router_settings": {"num_retries": 0},
        }
    )


@pytest.fixture
def client(gateway):
    return anthropic.Anthropic(base_url=gateway.url, api_key=MASTER, max_retries=0, timeout=20)


def sent(upstream) -> dict:
    return orjson.loads([r for r in upstream.requests() if r["path"] == "/v1/chat/completions"][-1]["body"])


def spend_row(gateway, request_id: str) -> dict:
    rows = Admin(gateway.url, MASTER).wait_logs(1, request_id=request_id)
    assert rows, request_id
    return rows[0]


@pytest.mark.parametrize(("name", "prefix", "flavour", "reports_usage"), SERVERS)
def test_streamed_reply_stops_at_max_tokens_and_is_counted(
    gateway, client, upstream, name, prefix, flavour, reports_usage
):
    upstream.script({"api": "openai", "server": flavour, "content": LONG})
    with client.messages.stream(
        model=name, max_tokens=24, messages=[{"role": "user", "content": "Tell me a story"}]
    ) as stream:
        message = stream.get_final_message()
        request_id = stream.response.headers["request-id"]
    body = sent(upstream)
    assert body["max_tokens"] == 24 and "max_completion_tokens" not in body
    assert message.content[0].text == "".join(tokens(LONG)[:24])  # the server stopped at 24
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 24
    row = spend_row(gateway, request_id)
    assert row["completion_tokens"] == 24
    assert row["estimated"] is (not reports_usage)


def test_usage_missing_from_a_stream_counts_its_tokens(gateway, client, upstream):
    """llama.cpp streams one token per chunk and no usage: the chunks are the count, where four
    characters a token would say about half (short words)."""
    text = "a b c d e f g h i j k l m n o p q r s t u v w x y z " * 3
    upstream.script({"api": "openai", "server": "llamacpp", "content": text})
    with client.messages.stream(
        model="llama", max_tokens=500, messages=[{"role": "user", "content": "letters"}]
    ) as stream:
        message = stream.get_final_message()
        request_id = stream.response.headers["request-id"]
    true_count = len(tokens(text))
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == true_count > len(text) // 4 + 10
    row = spend_row(gateway, request_id)
    assert row["completion_tokens"] == true_count and row["estimated"] is True


def test_openai_service_keeps_max_completion_tokens():
    """The default for api.openai.com is unchanged (a fake at another address says it plays it)."""
    from parley.translate.openai_options import options_from_params

    assert options_from_params("openai", {}).max_tokens_field == "max_completion_tokens"
    assert (
        options_from_params("openai", {"api_base": "https://api.openai.com/v1"}).max_tokens_field
        == "max_completion_tokens"
    )
    assert (
        options_from_params("openai", {"api_base": "http://127.0.0.1:8080/v1"}).max_tokens_field
        == "max_tokens"
    )
