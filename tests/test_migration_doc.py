"""docs/migrating-from-litellm.md names every LiteLLM key parley knows of, and every key parley
acts on in the LiteLLM sections: the table is the whole story."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from parley.config import ConfigError, build_config, known

DOC = (Path(__file__).parent.parent / "docs" / "migrating-from-litellm.md").read_text()
NAMED = set(re.findall(r"`([a-z0-9_\-]+)`", DOC))


@pytest.mark.parametrize(
    "group",
    [
        "LITELLM_GENERAL",
        "LITELLM_ROUTER",
        "LITELLM_LITELLM",
        "LITELLM_CACHE_PARAMS",
        "LITELLM_PARAMS",
        "LITELLM_SECTIONS",
        "LITELLM_SETTINGS",
        "CACHE_PARAMS",
    ],
)
def test_every_litellm_key_has_a_row(group):
    missing = sorted(set(getattr(known, group)) - NAMED)
    assert missing == [], f"{group}: add these to docs/migrating-from-litellm.md"


def test_ollama_prefix_points_at_ollama_chat():
    doc = {"model_list": [{"model_name": "l", "litellm_params": {"model": "ollama/llama3"}}]}
    with pytest.raises(ConfigError) as e:
        build_config(doc, "c.yaml", env={})
    assert "write ollama_chat/llama3 (api_base http://host:11434/v1)" in str(e.value)
