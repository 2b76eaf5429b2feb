"""Config loading: LiteLLM-compatible shapes, env references, errors that say where."""

from __future__ import annotations

import pytest

from parley.config import ConfigError, build_config, load_config, quick_config
from parley.router.table import ModelTable


def test_litellm_params_alias_and_env_reference():
    config = build_config(
        {
            "model_list": [
                {
                    "model_name": "claude",
                    "litellm_params": {
                        "model": "anthropic/claude-sonnet-4-5",
                        "api_key": "os.environ/MY_KEY",
                        "timeout": 30,
                        "extra_headers": {"x-team": "a"},
                    },
                }
            ],
            "general_settings": {"master_key": "os.environ/MASTER"},
        },
        "cfg.yaml",
        env={"MY_KEY": "sk-ant-1", "MASTER": "sk-m"},
    )
    dep = config.deployments[0]
    assert (dep.provider, dep.api, dep.model, dep.api_key) == (
        "anthropic",
        "anthropic",
        "claude-sonnet-4-5",
        "sk-ant-1",
    )
    assert dep.api_base == "https://api.anthropic.com" and dep.timeout == 30
    assert dep.extra_headers == {"x-team": "a"}
    assert config.master_key == "sk-m"


@pytest.mark.parametrize(
    "entry, where",
    [
        ({"params": {"model": "anthropic/x"}}, "cfg.yaml: model_list[0]: model_name: required"),
        ({"model_name": "m"}, "model_list[0] (model_name 'm'): params: required"),
        ({"model_name": "m", "params": {"model": "claude"}}, "params.model: required, as provider/model"),
        ({"model_name": "m", "params": {"model": "nosuch/x"}}, "params.model: unknown provider 'nosuch'"),
        ({"model_name": "m", "params": {"model": "anthropic/x", "timeout": "soon"}}, "params.timeout"),
        ({"model_name": "m", "params": {"model": "anthropic/x", "api_base": "ftp://x"}}, "params.api_base"),
        (
            {"model_name": "m", "params": {"model": "anthropic/x", "api_key": "os.environ/NOPE_NOT_SET"}},
            "params.api_key: environment variable NOPE_NOT_SET is not set",
        ),
        ({"model_name": "m", "params": {"model": "hosted_vllm/x"}}, "params.api_base: required"),
    ],
)
def test_errors_name_file_entry_and_field(entry, where):
    with pytest.raises(ConfigError) as info:
        build_config({"model_list": [entry]}, "cfg.yaml", env={})
    assert where in str(info.value)
    assert str(info.value).startswith("cfg.yaml")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(str(tmp_path / "none.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))


def test_only_if_env_skips_entries():
    doc = {
        "model_list": [
            {
                "model_name": "a/*",
                "only_if_env": "A_KEY",
                "params": {"model": "anthropic/*", "api_key": "os.environ/A_KEY"},
            },
            {"model_name": "m", "params": {"model": "mock/m"}},
        ]
    }
    assert [d.model_name for d in build_config(doc, "c", env={}).deployments] == ["m"]
    assert len(build_config(doc, "c", env={"A_KEY": "k"}).deployments) == 2


def test_wildcards_exact_names_and_aliases():
    config = build_config(
        {
            "model_list": [
                {"model_name": "*", "params": {"model": "anthropic/*"}},
                {"model_name": "anthropic/*", "params": {"model": "anthropic/*"}},
                {"model_name": "claude-haiku", "params": {"model": "anthropic/claude-haiku-4-5-20251001"}},
            ],
            "router_settings": {"model_group_alias": {"haiku": "claude-haiku"}},
        },
        "c",
        env={},
    )
    table = ModelTable(config.deployments, config.model_group_alias)
    assert table.resolve("claude-haiku")[0].upstream_model == "claude-haiku-4-5-20251001"
    assert table.resolve("haiku")[0].upstream_model == "claude-haiku-4-5-20251001"
    assert table.resolve("anthropic/claude-opus-4-7")[0].upstream_model == "claude-opus-4-7"
    assert table.resolve("anthropic/claude-opus-4-7")[0].deployment.model_name == "anthropic/*"
    assert table.resolve("anything-else")[0].upstream_model == "anything-else"


def test_quick_config_serves_bare_and_prefixed_names():
    config = quick_config("anthropic/claude-sonnet-4-5", env={"ANTHROPIC_API_KEY": "sk-ant"})
    table = ModelTable(config.deployments, config.model_group_alias)
    assert len(config.deployments) == 1
    assert table.resolve("claude-sonnet-4-5")[0].deployment.api_key == "sk-ant"
    assert table.resolve("anthropic/claude-sonnet-4-5")[0].upstream_model == "claude-sonnet-4-5"
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        quick_config("anthropic/claude-sonnet-4-5", env={})


def test_shipped_default_config_loads_without_keys(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = load_config("config/default.yaml")
    assert [d.model_name for d in config.deployments] == ["parley-mock", "parley-embed"]
