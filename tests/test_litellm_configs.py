"""LiteLLM's documented example configs (tests/configs/, each naming its page) start with
`parley --config FILE`, and their fallbacks, retries and timeouts behave as LiteLLM documents:
retry `num_retries` times, then the fallback group; a context-window or content-policy error goes
straight to its fallback; `request_timeout` bounds a call."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import openai
import orjson
import pytest
import yaml

from keys_support import Admin
from parley.testing.procs import FakeUpstream, ServerProcess, free_port

CONFIGS = Path(__file__).parent / "configs"
OPENAI_PROTOCOL = ("openai", "hosted_vllm", "ollama_chat")


def start(
    tmp_path: Path, name: str, upstream: FakeUpstream, env: dict[str, str] | None = None
) -> ServerProcess:
    """`parley --config` on a copy of configs/`name` whose deployments all point at `upstream`."""
    text = (CONFIGS / name).read_text()
    doc = yaml.safe_load(text)
    for entry in doc["model_list"]:
        params = entry["litellm_params"]
        provider = params["model"].split("/", 1)[0]
        params["api_base"] = upstream.url + ("/v1" if provider in OPENAI_PROTOCOL else "")
        params.setdefault("api_key", "sk-local-server")  # the fake asks for a key, as OpenAI does
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    port = free_port()
    clean = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "PARLEY_MASTER_KEY")
    }
    full_env = {
        **clean,
        "OPENAI_API_KEY": "sk-openai-test",
        "ANTHROPIC_API_KEY": "sk-ant-test",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": "6379",
        "REDIS_KEY_PREFIX": f"t-{port}",
        "CACHE_NAMESPACE": f"t-{port}",
        **(env or {}),
    }
    if "os.environ/DATABASE_URL" in text:
        full_env["DATABASE_URL"] = f"sqlite:///{tmp_path}/litellm.db"
    argv = [sys.executable, "-m", "parley", "--config", str(path), "--port", str(port)]
    return ServerProcess(argv, port, "/health/liveness", env=full_env)


def chat(gw: ServerProcess, model: str, key: str = "sk-1234", **kw) -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hello there"}], max_tokens=32, **kw
    )


def models_asked(upstream: FakeUpstream) -> list[str]:
    return [
        orjson.loads(r["body"])["model"] for r in upstream.requests() if r["path"].endswith("/completions")
    ]


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_each_example_config_starts_and_serves(tmp_path, upstream, name):
    gw = start(tmp_path, name, upstream)
    try:
        first = yaml.safe_load((CONFIGS / name).read_text())["model_list"][0]["model_name"]
        reply = chat(gw, first)
        assert "hello there" in (reply.choices[0].message.content or "")
    finally:
        gw.stop()
    log = gw.log()
    assert "Traceback" not in log and "config error" not in log


def test_router_settings_fallbacks_after_retries(tmp_path, upstream):
    """03: gpt-3.5-turbo fails every try (1 + num_retries, LiteLLM's default 2 here too), then gpt-4."""
    fail = {"api": "openai", "match": {"model": "gpt-3.5-turbo"}, "status": 500, "error": {"message": "down"}}
    upstream.script(fail, fail, fail)
    gw = start(tmp_path, "03_router_fallbacks.yaml", upstream)
    try:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-3.5-turbo", messages=[{"role": "user", "content": "hello there"}], max_tokens=32
        )
        assert raw.headers["x-parley-fallback"] == "gpt-4"
        assert "hello there" in (raw.parse().choices[0].message.content or "")
    finally:
        gw.stop()
    assert models_asked(upstream) == ["gpt-3.5-turbo"] * 3 + ["gpt-4-ca"]


def test_litellm_settings_num_retries_and_fallbacks(tmp_path, upstream):
    """04: litellm_settings.num_retries: 3 -> four tries of zephyr-beta, then its fallback."""
    fail = {"api": "openai", "match": {"model": "HuggingFaceH4/zephyr-7b-beta"}, "status": 503}
    upstream.script(*[fail] * 4)
    gw = start(tmp_path, "04_litellm_settings_reliability.yaml", upstream)
    try:
        reply = chat(gw, "zephyr-beta")
        assert "hello there" in (reply.choices[0].message.content or "")
    finally:
        gw.stop()
    assert models_asked(upstream) == ["HuggingFaceH4/zephyr-7b-beta"] * 4 + ["gpt-3.5-turbo"]


def test_litellm_settings_retry_then_success_needs_no_fallback(tmp_path, upstream):
    fail = {"api": "openai", "match": {"model": "HuggingFaceH4/zephyr-7b-beta"}, "status": 500}
    upstream.script(fail)
    gw = start(tmp_path, "04_litellm_settings_reliability.yaml", upstream)
    try:
        assert "hello there" in (chat(gw, "zephyr-beta").choices[0].message.content or "")
    finally:
        gw.stop()
    assert models_asked(upstream) == ["HuggingFaceH4/zephyr-7b-beta"] * 2


def test_context_window_fallback_is_taken_at_once(tmp_path, upstream):
    too_long = {
        "api": "openai",
        "match": {"model": "gpt-3.5-turbo"},
        "status": 400,
        "error": {
            "message": "This model's maximum context length is 4097 tokens",
            "code": "context_length_exceeded",
        },
    }
    upstream.script(too_long)
    gw = start(tmp_path, "04_litellm_settings_reliability.yaml", upstream)
    try:
        assert "hello there" in (chat(gw, "gpt-3.5-turbo").choices[0].message.content or "")
    finally:
        gw.stop()
    assert models_asked(upstream) == ["gpt-3.5-turbo", "gpt-3.5-turbo-16k"]


def test_content_policy_fallback(tmp_path, upstream):
    refused = {
        "api": "anthropic",
        "status": 400,
        "error": {
            "type": "invalid_request_error",
            "message": "The request was rejected: it violates our content policy",
        },
    }
    upstream.script(refused)
    gw = start(tmp_path, "05_content_policy_fallbacks.yaml", upstream)
    try:
        assert "hello there" in (chat(gw, "claude-2").choices[0].message.content or "")
    finally:
        gw.stop()
    paths = [r["path"] for r in upstream.requests()]
    assert paths == ["/v1/messages", "/v1/chat/completions"]


def test_request_timeout_bounds_a_call_and_the_call_is_retried(tmp_path, upstream):
    """04: litellm_settings.request_timeout: 10 -> a backend taking 30 s is cut at 10 s and tried again."""
    slow = {"api": "openai", "match": {"model": "gpt-3.5-turbo-16k"}, "delay": 30}
    upstream.script(slow)
    gw = start(tmp_path, "04_litellm_settings_reliability.yaml", upstream)
    try:
        started = time.monotonic()
        assert "hello there" in (chat(gw, "gpt-3.5-turbo-16k").choices[0].message.content or "")
        elapsed = time.monotonic() - started
    finally:
        gw.stop()
    assert 10 <= elapsed < 20
    assert models_asked(upstream) == ["gpt-3.5-turbo-16k"] * 2


def test_virtual_keys_config_hands_out_a_key(tmp_path, upstream):
    gw = start(tmp_path, "06_virtual_keys.yaml", upstream)
    try:
        key = Admin(gw.url, "sk-1234").post("/key/generate", {"models": ["gpt-3.5-turbo"]})["key"]
        assert "hello there" in (chat(gw, "gpt-3.5-turbo", key=key).choices[0].message.content or "")
        with pytest.raises(openai.AuthenticationError):
            chat(gw, "gpt-3.5-turbo", key="sk-wrong")
    finally:
        gw.stop()


def test_environment_variables_feed_os_environ_references(tmp_path, upstream):
    gw = start(
        tmp_path, "12_environment_and_aliases.yaml", upstream, env={"OPENAI_API_KEY": "sk-from-env-var"}
    )
    try:
        chat(gw, "gpt-4")  # the alias
    finally:
        gw.stop()
    [request] = upstream.requests()
    assert request["headers"]["authorization"] == "Bearer sk-from-env-var"
