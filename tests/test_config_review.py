"""Nothing in a config is lost in silence: typos of known keys are errors with "did you mean",
security settings in the wrong place are errors, strict_config refuses every unacted key."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from parley.config import ConfigError, build_config
from parley.config.review import distance

MODEL = "model_list: [{model_name: m, params: {model: mock/m}}]\n"


def serve(tmp_path, text: str, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "parley", "serve", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PARLEY_MASTER_KEY")},
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "general_setting: {master_key: sk-1}\n",
            "general_setting: unknown section; did you mean `general_settings`?",
        ),
        (
            "general_settings: {masterkey: sk-1}\n",
            "general_settings.masterkey: unknown key; did you mean `master_key`?",
        ),
        ("general_settings: {master-key: sk-1}\n", "did you mean `master_key`?"),
        ("general_settings: {MasterKey: sk-1}\n", "did you mean `master_key`?"),
        ("general_settings: {master_keys: sk-1}\n", "did you mean `master_key`?"),
        ("general_settings: {databse_url: 'sqlite:///x.db'}\n", "did you mean `database_url`?"),
        (
            "litellm_settings: {master_key: sk-1}\n",
            "litellm_settings.master_key: master_key belongs in general_settings",
        ),
        ("master_key: sk-1\n", "master_key: master_key belongs in general_settings"),
        ("model_lists: []\n", "model_lists: unknown section; did you mean `model_list`?"),
        (
            "router_settings: {num_retires: 3}\n",
            "router_settings.num_retires: unknown key; did you mean `num_retries`?",
        ),
        ("litellm_settings: {fallback: []}\n", "did you mean `fallbacks`?"),
    ],
)
def test_a_typo_is_one_line_naming_file_key_and_the_known_name(tmp_path, text, expected):
    result = serve(tmp_path, MODEL + text)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("parley: config error: ") and "cfg.yaml: " in lines[0]
    assert expected in lines[0]


def test_a_key_far_from_any_known_name_is_reported_not_refused():
    config = build_config({"general_settings": {"db_url": "x"}}, "c.yaml", env={})
    assert config.ignored == ["general_settings.db_url (unknown key)"]


def test_typos_in_model_params_are_errors_too():
    doc = {"model_list": [{"model_name": "m", "params": {"model": "mock/m", "api_bse": "x", "tiemout": 5}}]}
    with pytest.raises(ConfigError) as e:
        build_config(doc, "c.yaml", env={})
    assert str(e.value) == (
        "c.yaml: model_list[0].params.api_bse: unknown key; did you mean `api_base`? (and 1 more)"
    )
    doc["model_list"][0]["params"] = {"model": "mock/m", "tiemout": 5}
    with pytest.raises(ConfigError, match=r"params.tiemout: unknown key; did you mean `timeout`\?"):
        build_config(doc, "c.yaml", env={})
    doc["model_list"][0] = {"model_name": "m", "litelm_params": {"model": "mock/m"}}
    with pytest.raises(ConfigError, match="did you mean `litellm_params`"):
        build_config(doc, "c.yaml", env={})


def test_litellm_names_parley_does_not_use_are_reported_not_refused():
    """A real LiteLLM key next to a known one (`top_k` and `top_p`) is not taken for a typo."""
    config = build_config(
        {
            "model_list": [{"model_name": "m", "params": {"model": "mock/m", "top_k": 3, "top_p": 0.5}}],
            "litellm_settings": {"success_callback": ["langfuse"], "telemetry": False},
            "general_settings": {"alerting": ["slack"]},
        },
        "c.yaml",
        env={},
    )
    assert config.ignored == [
        "model_list[0].params.top_k (LiteLLM param parley does not support)",
        "model_list[0].params.top_p (LiteLLM param parley does not support)",
        "litellm_settings.success_callback (LiteLLM setting parley does not support)",
        "litellm_settings.telemetry (LiteLLM setting parley does not support)",
        "general_settings.alerting (LiteLLM setting parley does not support)",
    ]


def test_strict_config_makes_every_unacted_key_an_error(tmp_path):
    text = MODEL + "general_settings: {strict_config: true}\nlitellm_settings: {success_callback: [x]}\n"
    result = serve(tmp_path, text)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"parley: config error: {tmp_path / 'cfg.yaml'}: litellm_settings.success_callback: LiteLLM setting "
        "parley does not support; remove it (general_settings.strict_config is true)"
    ]
    clean = build_config({"model_list": [], "general_settings": {"strict_config": True}}, "c.yaml", env={})
    assert clean.general.strict_config and clean.ignored == []
    with pytest.raises(ConfigError, match=r"general_settings.strict_config: must be true or false"):
        build_config({"general_settings": {"strict_config": "yes"}}, "c.yaml", env={})


def test_edit_distance_counts_a_swap_as_one():
    assert distance("tiemout", "timeout") == 1
    assert distance("apibse", "apibase") == 1
    assert distance("generalsetting", "generalsettings") == 1
    assert distance("abc", "xyz") == 3
