"""Config for the Google and Azure backends: LiteLLM's parameter names are known, mistakes stop
startup with one line naming the entry, and the URLs each deployment calls."""

from __future__ import annotations

import orjson
import pytest

from parley.config import ConfigError, build_config
from parley.gateway import check_providers
from parley.providers.azure import azure_route
from parley.providers.vertex import endpoint_for, site_from
from parley.spend.pricing import PriceTable
from parley.testing.fake_google import service_account_info


def config(*params: dict):
    return build_config(
        {"model_list": [{"model_name": f"m{i}", "params": p} for i, p in enumerate(params)]}, "c.yaml", {}
    )


def test_litellm_parameter_names_are_known():
    cfg = config(
        {
            "model": "vertex_ai/claude-sonnet-4-5@20250929",
            "vertex_project": "p",
            "vertex_location": "global",
            "vertex_credentials": service_account_info("https://oauth2.googleapis.com/token"),
            "api_version": "v1",
        },
        {"model": "gemini/gemini-2.5-flash", "api_key": "AIza-x"},
        {
            "model": "azure/dep",
            "api_base": "https://r.openai.azure.com",
            "api_key": "k",
            "api_version": "2024-10-21",
            "base_model": "gpt-4o",
        },
        {"model": "azure/dep", "api_base": "https://r.openai.azure.com", "azure_ad_token": "eyJ..."},
    )
    assert cfg.ignored == []
    assert [d.api for d in cfg.deployments] == ["vertex", "gemini", "azure", "azure"]
    assert cfg.deployments[1].api_base == "https://generativelanguage.googleapis.com"
    check_providers(cfg)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"model": "azure/dep", "api_key": "k"}, "params.api_base: required for provider 'azure'"),
    ],
)
def test_config_errors(params, message):
    with pytest.raises(ConfigError) as e:
        config(params)
    assert message in str(e.value)


@pytest.mark.parametrize(
    "params, message",
    [
        (
            {"model": "azure/dep", "api_base": "https://r.openai.azure.com"},
            "model_list entry 'm0': params.api_key or params.azure_ad_token: required for azure",
        ),
        (
            {"model": "vertex_ai/gemini-2.5-pro", "vertex_credentials": "/no/such/sa.json"},
            "model_list entry 'm0': params.vertex_credentials: no such file '/no/such/sa.json'",
        ),
        (
            {"model": "vertex_ai/gemini-2.5-pro", "vertex_credentials": "{not json"},
            "vertex_credentials: not valid JSON",
        ),
        (
            {"model": "vertex_ai/gemini-2.5-pro", "vertex_credentials": {"type": "service_account"}},
            "params.vertex_credentials:",
        ),
        (
            {
                "model": "vertex_ai/gemini-2.5-pro",
                "vertex_credentials": dict(service_account_info("https://t.example/token"), project_id=None),
            },
            "params.vertex_project: required (the credentials name no project)",
        ),
    ],
)
def test_provider_checks_fail_startup_with_one_line(params, message):
    with pytest.raises(ConfigError) as e:
        check_providers(config(params))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_credentials_as_a_file_or_json_text(tmp_path):
    info = service_account_info("https://oauth2.googleapis.com/token", "from-file")
    path = tmp_path / "sa.json"
    path.write_bytes(orjson.dumps(info))
    for value in (str(path), orjson.dumps(info).decode()):
        site = site_from(
            config({"model": "vertex_ai/claude-haiku-4-5", "vertex_credentials": value}).deployments[0]
        )
        assert site.project == "from-file" and site.location == "us-central1"
        assert site.model_url("from-file", "anthropic", "claude-haiku-4-5") == (
            "https://us-central1-aiplatform.googleapis.com/v1/projects/from-file/locations/us-central1"
            "/publishers/anthropic/models/claude-haiku-4-5"
        )


def test_vertex_endpoints_by_location():
    assert endpoint_for("global") == "https://aiplatform.googleapis.com"
    assert endpoint_for("us") == "https://aiplatform.us.rep.googleapis.com"
    assert endpoint_for("europe-west1") == "https://europe-west1-aiplatform.googleapis.com"


def test_azure_routes():
    base = {"model": "azure/dep", "api_base": "https://r.openai.azure.com", "api_key": "k"}
    [default, v1, preview, v1_base] = config(
        base,
        dict(base, api_version="v1"),
        dict(base, api_version="2025-04-01-preview"),
        dict(base, api_base="https://r.openai.azure.com/openai/v1"),
    ).deployments
    assert azure_route(default, "my dep") == (
        "/openai/deployments/my%20dep/chat/completions",
        "api-version=2024-10-21",
    )
    assert azure_route(v1, "gpt-4o") == ("/openai/v1/chat/completions", "")
    assert azure_route(preview, "d") == (
        "/openai/deployments/d/chat/completions",
        "api-version=2025-04-01-preview",
    )
    assert azure_route(v1_base, "gpt-4o") == ("/chat/completions", "")


def test_vertex_claude_prices_regional_endpoints_higher():
    prices = PriceTable()
    deployments = config(
        {"model": "vertex_ai/claude-sonnet-4-5@20250929", "vertex_location": "global"},
        {"model": "vertex_ai/claude-sonnet-4-5@20250929", "vertex_location": "us-east5"},
        {"model": "vertex_ai/gemini-2.5-pro", "vertex_location": "us-east5"},
    ).deployments
    world, region, gemini = (prices.for_deployment(d, d.model) for d in deployments)
    assert world.input == pytest.approx(3 / 1e6) and world.cache_read == pytest.approx(0.30 / 1e6)
    assert region.input == pytest.approx(3.3 / 1e6) and region.output == pytest.approx(16.5 / 1e6)
    assert gemini.input == pytest.approx(1.25 / 1e6)  # no premium listed for Gemini
