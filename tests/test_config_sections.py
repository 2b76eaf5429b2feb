"""Typed settings per config section: one-line errors at load, defaults, and the ignored-keys report."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml

from parley.config import (
    CacheParams,
    ConfigError,
    GeneralSettings,
    PassthroughSettings,
    RouterSettings,
    build_config,
    load_config,
)
from parley.testing.procs import Gateway

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.parametrize(
    "doc, message",
    [
        (
            {"general_settings": {"stream_ping_interval": "x"}},
            "cfg.yaml: general_settings.stream_ping_interval: must be a positive number, got 'x'",
        ),
        (
            {"general_settings": {"stream_ping_interval": 0}},
            "cfg.yaml: general_settings.stream_ping_interval: must be a positive number, got 0",
        ),
        (
            {"general_settings": {"spend_batch_size": 2.5}},
            "cfg.yaml: general_settings.spend_batch_size: must be a positive integer, got 2.5",
        ),
        (
            {"general_settings": {"key_cache_ttl": True}},
            "cfg.yaml: general_settings.key_cache_ttl: must be a non-negative number, got True",
        ),
        (
            {"general_settings": {"master_key": 1234}},
            "cfg.yaml: general_settings.master_key: must be a string, got 1234",
        ),
        (
            {"general_settings": {"database_pool_size": "many"}},
            "cfg.yaml: general_settings.database_pool_size: must be a positive integer, got 'many'",
        ),
        ({"general_settings": ["master_key"]}, "cfg.yaml: general_settings: must be a mapping"),
        (
            {"router_settings": {"num_retries": -1}},
            "cfg.yaml: router_settings.num_retries: must be a non-negative integer, got -1",
        ),
        (
            {"router_settings": {"redis_port": "six"}},
            "cfg.yaml: router_settings.redis_port: must be a positive integer, got 'six'",
        ),
        (
            {"router_settings": {"redis_timeout": 0}},
            "cfg.yaml: router_settings.redis_timeout: must be a positive number, got 0",
        ),
        (
            {"router_settings": {"default_limits": {"rpm_limit": 0}}},
            "cfg.yaml: router_settings.default_limits.rpm_limit: must be a positive integer, got 0",
        ),
        (
            {"router_settings": {"routing_strategy_args": {"lowest_latency_buffer": "big"}}},
            "cfg.yaml: router_settings.routing_strategy_args.lowest_latency_buffer: must be a non-negative "
            "number, got 'big'",
        ),
        (
            {"litellm_settings": {"cache": "yes"}},
            "cfg.yaml: litellm_settings.cache: must be true or false, got 'yes'",
        ),
        (
            {"litellm_settings": {"cache": True, "cache_params": {"type": "s3"}}},
            "cfg.yaml: litellm_settings.cache_params.type: must be one of local, redis, semantic, "
            "redis-semantic, got 's3'",
        ),
        (
            {"litellm_settings": {"cache_params": {"max_entries": -5}}},
            "cfg.yaml: litellm_settings.cache_params.max_entries: must be a positive integer, got -5",
        ),
        (
            {"anthropic_passthrough": {"timeout": -1}},
            "cfg.yaml: anthropic_passthrough.timeout: must be a positive number, got -1",
        ),
        (
            {"anthropic_passthrough": {"api_base": "ftp://x"}},
            "cfg.yaml: anthropic_passthrough.api_base: must be an http(s) URL, got 'ftp://x'",
        ),
        (
            {"anthropic_passthrough": {"forward_client_key": "no"}},
            "cfg.yaml: anthropic_passthrough.forward_client_key: must be true or false, got 'no'",
        ),
    ],
)
def test_bad_values_fail_at_load_with_one_line_naming_file_section_and_field(doc, message):
    with pytest.raises(ConfigError) as info:
        build_config(doc, "cfg.yaml", env={})
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_defaults_are_those_parley_always_used():
    config = build_config({}, "cfg.yaml", env={})
    g = config.general
    assert g == GeneralSettings()
    assert (g.master_key, g.database_url, g.max_request_bytes) == (None, None, 32 * 1024 * 1024)
    assert (g.stream_ping_interval, g.key_cache_ttl, g.spend_flush_interval, g.spend_batch_size) == (
        15.0,
        60.0,
        0.5,
        500,
    )
    assert (g.budget_refresh_seconds, g.budget_min_reply_tokens, g.budget_input_margin) == (5.0, 16, 1.2)
    assert (g.database_pool_size, g.database_max_overflow, g.database_pool_timeout) == (5, 5, 10.0)
    assert config.router == RouterSettings()
    assert (config.router.strategy, config.router.num_retries, config.router.allowed_fails) == (
        "simple-shuffle",
        2,
        3,
    )
    assert (config.redis.url, config.redis.key_prefix, config.redis.timeout) == (None, None, 0.5)
    assert config.default_limits.rpm_limit is None and config.default_limits.model_tpm_limit == {}
    assert config.litellm.cache is False
    assert config.litellm.cache_params == CacheParams(type="local", ttl=600.0, max_entries=10_000)
    assert config.passthrough == PassthroughSettings(
        api_base="https://api.anthropic.com", api_key=None, forward_client_key=False, timeout=600.0
    )
    assert config.ignored == []


def test_values_env_fallbacks_and_numbers_from_env_references():
    env = {
        "PARLEY_MASTER_KEY": "sk-m",
        "DATABASE_URL": "parley.db",
        "ANTHROPIC_API_KEY": "sk-ant",
        "REDIS_PORT": "6380",
        "PING": "0.3",
    }
    config = build_config(
        {
            "general_settings": {"stream_ping_interval": "os.environ/PING", "max_request_size_mb": 1},
            "router_settings": {
                "redis_host": "127.0.0.1",
                "redis_port": "os.environ/REDIS_PORT",
                "redis_password": "pw",
                "redis_key_prefix": "p1",
                "default_limits": {"rpm_limit": 3, "model_tpm_limit": {"m": 9}},
            },
            "litellm_settings": {
                "cache": True,
                "cache_params": {"type": "redis", "ttl": 5, "namespace": "n"},
            },
            "anthropic_passthrough": {"api_base": "http://127.0.0.1:9/", "forward_client_key": True},
        },
        "cfg.yaml",
        env=env,
    )
    assert (config.general.master_key, config.general.database_url) == ("sk-m", "parley.db")
    assert config.master_key == "sk-m" and config.database_url == "parley.db"
    assert config.general.stream_ping_interval == 0.3 and config.max_request_bytes == 1024 * 1024
    assert config.redis.url == "redis://:pw@127.0.0.1:6380" and config.redis.key_prefix == "p1"
    assert config.default_limits.rpm_limit == 3 and config.default_limits.model_tpm_limit == {"m": 9}
    assert config.litellm.cache_params == CacheParams(type="redis", ttl=5.0, namespace="n")
    assert config.passthrough == PassthroughSettings(
        api_base="http://127.0.0.1:9", api_key="sk-ant", forward_client_key=True
    )
    explicit = build_config({"anthropic_passthrough": {"api_key": None}}, "c", env=env)
    assert explicit.passthrough.api_key is None
    empty = build_config(
        {
            "general_settings": {"master_key": "os.environ/EMPTY"},
            "anthropic_passthrough": {"api_key": "os.environ/EMPTY"},
        },
        "c",
        env={"EMPTY": ""},
    )
    assert empty.master_key is None and empty.passthrough.api_key is None


def test_ignored_keys_are_listed_by_path_with_a_reason():
    config = build_config(
        {
            "model_list": [
                {
                    "model_name": "m",
                    "params": {
                        "model": "mock/m",
                        "temperature": 0.2,
                        "weight": 2,
                        "rpm": 5,
                        "max_tokens_field": "max_tokens",
                        "input_cost_per_token": 1e-6,
                    },
                    "model_info": {"id": "a", "mode": "chat", "base_model": "x"},
                    "tags": ["x"],
                }
            ],
            "general_settings": {"alerting": ["slack"], "stream_ping_interval": 5, "json_logs": True},
            "litellm_settings": {
                "modify_params": True,
                "num_retries": 3,
                "cache": False,
                "cache_params": {"type": "local", "supported_call_types": []},
            },
            "router_settings": {"num_retries": 1, "routing_strategy_args": {"ttl": 3}},
            "anthropic_passthrough": {"api_key": "k", "organization": "k"},
            "environment_variables": {"A": "b"},
            "mcp_servers": {},
            "extras": 1,
        },
        "cfg.yaml",
        env={},
    )
    assert config.ignored == [
        "model_list[0].tags (unknown key)",
        "model_list[0].params.temperature (LiteLLM param parley does not support)",
        "model_list[0].model_info.base_model (model_info parley does not use)",
        "general_settings.alerting (LiteLLM setting parley does not support)",
        "general_settings.json_logs (unknown key; parley reads litellm_settings.json_logs)",
        "litellm_settings.modify_params (LiteLLM setting parley does not support)",
        "litellm_settings.cache_params.supported_call_types (LiteLLM setting parley does not support)",
        "router_settings.routing_strategy_args.ttl (LiteLLM setting parley does not support)",
        "anthropic_passthrough.organization (unknown key)",
        "mcp_servers (LiteLLM section parley does not support)",
        "extras (unknown section)",
    ]


def test_shipped_and_readme_configs_use_only_keys_parley_acts_on(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert load_config("config/default.yaml").ignored == []
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S) if "model_list" in b]
    env = {"ANTHROPIC_API_KEY": "a", "OPENAI_API_KEY": "o", "PARLEY_MASTER_KEY": "m"}
    assert build_config(yaml.safe_load(block), "README.md", env=env).ignored == []


def test_serve_prints_each_ignored_key_once_across_workers():
    gateway = Gateway(
        {
            "model_list": [{"model_name": "m", "params": {"model": "mock/m"}}],
            "general_settings": {"alerting": ["slack"]},
            "litellm_settings": {"modify_params": True},
        },
        workers=2,
    )
    gateway.stop()  # started: it answered /health/liveness
    log = gateway.log()
    assert log.count("ignored: general_settings.alerting (LiteLLM setting parley does not support)\n") == 1
    assert (
        log.count("ignored: litellm_settings.modify_params (LiteLLM setting parley does not support)\n") == 1
    )


def test_serve_with_a_bad_setting_exits_with_one_line_and_no_traceback(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text(
        "model_list: [{model_name: m, params: {model: mock/m}}]\n"
        "general_settings: {stream_ping_interval: x}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "parley", "serve", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ),
    )
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        f"parley: config error: {bad}: general_settings.stream_ping_interval: must be a positive "
        "number, got 'x'"
    ]
    assert "Traceback" not in result.stderr + result.stdout
