"""Model discovery: `/v1/models` for both SDKs and for Claude Code's gateway discovery
(CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1), LiteLLM's `/model/info`, each limited to what the
key may use; and the Claude Code setting that sizes a non-Claude model's context window."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import anthropic
import openai
import orjson
import pytest

from keys_support import MASTER, Admin
from parley.testing.procs import anthropic_deployment, openai_deployment
from test_claude_code import claude_binary

MAIN_INFO = {"display_name": "Main (GPT via parley)", "max_input_tokens": 128000, "max_output_tokens": 16384}


@pytest.fixture(scope="module")
def gateway(start_gateway, fake_upstream, tmp_path_factory):
    main = openai_deployment("claude-main", fake_upstream, model="oa-main")
    main["model_info"] = MAIN_INFO
    return start_gateway(
        {
            "model_list": [
                main,
                anthropic_deployment("claude-side", fake_upstream, model="side-upstream"),
                openai_deployment("anthropic/gpt-4o", fake_upstream, model="gpt-4o"),
                openai_deployment("gpt-4o", fake_upstream, model="gpt-4o"),
                anthropic_deployment("claude-opus-*", fake_upstream, model="claude-opus-*"),
            ],
            "general_settings": {
                "master_key": MASTER,
                "database_url": str(tmp_path_factory.mktemp("discovery") / "parley.db"),
            },
        }
    )


@pytest.fixture(scope="module")
def limited_key(gateway):
    """A key for claude-main, anthropic/gpt-4o, and claude-opus-4-1 (served by the wildcard)."""
    models = ["claude-main", "anthropic/gpt-4o", "claude-opus-4-1"]
    return Admin.of(gateway).post("/key/generate", {"models": models})["key"]


def sdk(gateway, key: str = MASTER) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key, base_url=gateway.url, max_retries=0)


def test_models_list_for_the_master_key(gateway):
    models = list(sdk(gateway).models.list())
    assert [m.id for m in models] == ["claude-main", "claude-side", "anthropic/gpt-4o", "gpt-4o"]
    main = models[0]
    assert main.display_name == "Main (GPT via parley)"
    assert (main.max_input_tokens, main.max_tokens, main.lifecycle) == (128000, 16384, "active")
    assert models[1].display_name == "claude-side" and models[1].max_input_tokens is None
    oa = openai.OpenAI(api_key=MASTER, base_url=gateway.url + "/v1", max_retries=0)
    assert [m.id for m in oa.models.list()] == [m.id for m in models]


def test_models_pagination_as_the_sdk_sends_it(gateway):
    client = sdk(gateway)
    first = client.models.list(limit=2)
    assert [m.id for m in first.data] == ["claude-main", "claude-side"] and first.has_more
    assert [m.id for m in client.models.list(limit=2)] == [
        "claude-main",
        "claude-side",
        "anthropic/gpt-4o",
        "gpt-4o",
    ]
    after = client.models.list(limit=1, after_id="claude-side")
    assert [m.id for m in after.data] == ["anthropic/gpt-4o"] and after.has_more
    before = client.models.list(limit=1, before_id="gpt-4o")
    assert [m.id for m in before.data] == ["anthropic/gpt-4o"] and before.has_more


def test_a_key_sees_only_its_models(gateway, limited_key):
    client = sdk(gateway, limited_key)
    assert [m.id for m in client.models.list()] == ["claude-main", "anthropic/gpt-4o", "claude-opus-4-1"]
    assert client.models.retrieve("claude-opus-4-1").id == "claude-opus-4-1"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-side")
    with pytest.raises(anthropic.AuthenticationError):
        sdk(gateway, "sk-wrong").models.list()


def test_litellm_model_info(gateway, limited_key):
    admin = Admin.of(gateway, key=limited_key)
    for path in ("/model/info", "/v1/model/info"):
        data = admin.get(path)["data"]
        assert [d["model_name"] for d in data] == ["claude-main", "anthropic/gpt-4o"]
    main = data[0]
    assert main["litellm_params"] == {"model": "openai/oa-main"}
    assert main["model_info"]["max_input_tokens"] == 128000
    assert main["model_info"]["max_output_tokens"] == 16384
    assert main["model_info"]["litellm_provider"] == "openai"
    everything = Admin.of(gateway).get("/model/info")["data"]
    assert len(everything) == 5 and "sk-" not in orjson.dumps(everything).decode()
    side = next(d for d in everything if d["model_name"] == "claude-side")
    assert side["model_info"]["input_cost_per_token"] is None  # no list price for an unknown model
    one = Admin.of(gateway).get("/model/info", litellm_model_id=side["model_info"]["id"])["data"]
    assert [d["model_name"] for d in one] == ["claude-side"]


def run_claude(gateway, key: str, env: dict[str, str], home: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE", "AWS_"))}
    clean.update(
        {
            "HOME": home,
            "ANTHROPIC_BASE_URL": gateway.url,
            "ANTHROPIC_API_KEY": key,
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_MAX_RETRIES": "0",
            **env,
        }
    )
    return subprocess.run(
        [str(claude_binary()), "-p", "say hi", "--output-format", "json"],
        cwd=home,
        env=clean,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_claude_code_discovers_the_keys_models(gateway, limited_key):
    with tempfile.TemporaryDirectory(prefix="parley-cc-") as home:
        env = {"CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1", "ANTHROPIC_MODEL": "claude-main"}
        result = run_claude(gateway, limited_key, env, home)
        assert result.returncode == 0, result.stdout + result.stderr
        cache = orjson.loads((Path(home) / ".claude" / "cache" / "gateway-models.json").read_bytes())
    # Claude Code keeps the ids that start with `claude` or `anthropic`, with their display names.
    assert cache["models"] == [
        {"id": "claude-main", "display_name": "Main (GPT via parley)"},
        {"id": "anthropic/gpt-4o", "display_name": "anthropic/gpt-4o"},
        {"id": "claude-opus-4-1", "display_name": "claude-opus-4-1"},
    ]


@pytest.mark.parametrize(
    ("model", "env", "window"),
    [
        ("anthropic/gpt-4o", {"CLAUDE_CODE_MAX_CONTEXT_TOKENS": "128000"}, 128000),
        ("anthropic/gpt-4o", {}, 200000),
        ("claude-main", {"CLAUDE_CODE_MAX_CONTEXT_TOKENS": "128000"}, 200000),  # claude-* names: no
    ],
)
def test_claude_code_context_window_setting(gateway, model, env, window):
    """What docs/claude-code.md tells users: CLAUDE_CODE_MAX_CONTEXT_TOKENS sizes the window of a
    model whose name does not start with `claude-`; Claude Code reports the window it used."""
    with tempfile.TemporaryDirectory(prefix="parley-cc-") as home:
        env = {"ANTHROPIC_MODEL": model, "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-side", **env}
        result = run_claude(gateway, MASTER, env, home)
    assert result.returncode == 0, result.stdout + result.stderr
    usage = orjson.loads(result.stdout)["modelUsage"]
    assert usage[model]["contextWindow"] == window
