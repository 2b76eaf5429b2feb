"""Read the YAML file, resolve `os.environ/NAME` references, validate model_list and the sections.

Errors name the file, the entry and the field. Every `os.environ/NAME` value is resolved at load
time, so a missing variable fails at startup rather than at the first request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from parley.config.batches import BatchSettings
from parley.config.database import database_target
from parley.config.fields import ConfigError
from parley.config.guardrails import GuardrailSpec, load_guardrails
from parley.config.observability import ObservabilitySettings
from parley.config.review import review
from parley.config.routing import DefaultLimits, RedisSettings, RouterSettings, model_aliases
from parley.config.sections import (
    GeneralSettings,
    LitellmSettings,
    PassthroughSettings,
)
from parley.core.deployment import Deployment, ModelCard

EMBEDDED_DB = "parley.db"  # a master key without database_url: keys and spend in this file
NO_DATABASE = ("none", "off", "false")  # database_url values that keep keys and spend off
# litellm_settings keys that LiteLLM documents there and parley's router reads (router_settings wins)
LITELLM_ROUTER_KEYS = {
    "num_retries": "num_retries",
    "fallbacks": "fallbacks",
    "context_window_fallbacks": "context_window_fallbacks",
    "content_policy_fallbacks": "content_policy_fallbacks",
    "allowed_fails": "allowed_fails",
    "request_timeout": "timeout",
}

ENV_PREFIX = "os.environ/"
DEFAULT_TIMEOUT = 600.0
SECTION_NAMES = (
    "general_settings",
    "router_settings",
    "litellm_settings",
    "anthropic_passthrough",
    "batch_settings",
)

# provider prefix -> (wire protocol, default api_base)
PROVIDERS: dict[str, tuple[str, str | None]] = {
    "anthropic": ("anthropic", "https://api.anthropic.com"),
    "openai": ("openai", "https://api.openai.com/v1"),
    "mock": ("mock", None),
    "bedrock": ("bedrock", None),  # endpoint from aws_region_name (providers.bedrock_auth)
    "local": ("local", None),  # the built-in embedding model (local/parley-embed)
    # OpenAI-compatible servers known by their LiteLLM prefixes
    "hosted_vllm": ("openai", None),
    "vllm": ("openai", None),
    "deepseek": ("openai", "https://api.deepseek.com/v1"),
    "openrouter": ("openai", "https://openrouter.ai/api/v1"),
    "groq": ("openai", "https://api.groq.com/openai/v1"),
    "together_ai": ("openai", "https://api.together.xyz/v1"),
    "ollama_chat": ("openai", "http://127.0.0.1:11434/v1"),
    "llamacpp": ("openai", "http://127.0.0.1:8080/v1"),
    # Google and Azure (providers/vertex.py, gemini.py, azure.py); None: built from the params
    "vertex_ai": ("vertex", None),
    "gemini": ("gemini", "https://generativelanguage.googleapis.com"),
    "azure": ("azure", None),
}


@dataclass
class Config:
    """A loaded config.

    Typed, validated settings: `general` (general_settings), `router`, `redis` and `default_limits`
    (router_settings), `litellm` (litellm_settings), `passthrough` (anthropic_passthrough),
    `guardrails` (the top-level `guardrails:` list).
    `ignored` lists the keys of the file parley does not act on, as `path (reason)`.
    """

    path: str | None
    deployments: list[Deployment]
    model_group_alias: dict[str, str] = field(default_factory=dict)
    general: GeneralSettings = field(default_factory=GeneralSettings)
    router: RouterSettings = field(default_factory=RouterSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    default_limits: DefaultLimits = field(default_factory=DefaultLimits)
    litellm: LitellmSettings = field(default_factory=LitellmSettings)
    passthrough: PassthroughSettings = field(default_factory=PassthroughSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
    guardrails: tuple[GuardrailSpec, ...] = ()
    batches: BatchSettings = field(default_factory=BatchSettings)
    ignored: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)  # `environment_variables`, to set
    embedded_database: bool = False  # database_url defaulted to parley.db next to the config

    @property
    def master_key(self) -> str | None:
        return self.general.master_key

    @property
    def database_url(self) -> str | None:
        return self.general.database_url

    @property
    def max_request_bytes(self) -> int:
        return self.general.max_request_bytes


def load_config(path: str, env: Mapping[str, str] | None = None) -> Config:
    """Read `path` and return a validated Config."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    config = build_config(doc if doc is not None else {}, path, env)
    return with_embedded_database(config, doc if isinstance(doc, dict) else {}, path)


def with_embedded_database(config: Config, doc: Mapping[str, Any], path: str) -> Config:
    """A master key with no database_url: the SQLite file parley.db next to the config file."""
    general = config.general
    if general.master_key is None or general.database_url is not None:
        return config
    section = doc.get("general_settings")
    value = section.get("database_url") if isinstance(section, dict) else None
    if isinstance(value, str) and value.lower() in NO_DATABASE:
        return config
    db = os.path.join(os.path.dirname(os.path.abspath(path)), EMBEDDED_DB)
    general = replace(general, database_url="sqlite:///" + db)
    return replace(config, general=general, embedded_database=True)


def quick_config(model: str, env: Mapping[str, str] | None = None) -> Config:
    """The config `parley serve --model provider/name` builds: one deployment, no wildcard."""
    if "*" in model:
        raise ConfigError(f"--model {model}: wildcards need a config file")
    provider, _, name = model.partition("/")
    if not name:
        raise ConfigError(f"--model {model}: expected provider/model, e.g. anthropic/claude-sonnet-4-5")
    env_key = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}.get(provider)
    params: dict[str, Any] = {"model": model}
    if env_key:
        params["api_key"] = ENV_PREFIX + env_key
    doc = {
        "model_list": [{"model_name": name, "params": params}],
        "router_settings": {"model_group_alias": {model: name}},
    }
    return build_config(doc, "--model", env)


def build_config(doc: Any, path: str, env: Mapping[str, str] | None = None) -> Config:
    """Validate a parsed document (`path` names it in errors) into a Config."""
    env = os.environ if env is None else env
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    ignored = review(doc, path)
    environment = _environment(doc.get("environment_variables"), path, env)
    env = {**env, **environment}
    deployments = _deployments(doc.get("model_list") or [], path, env)
    raw = {
        k: _resolve(v, f"{path}: {k}", env)
        for k, v in doc.items()
        if k not in ("model_list", "environment_variables")
    }
    sections = _sections(raw, path)
    general = GeneralSettings.from_config(sections["general_settings"], f"{path}: general_settings", env)
    if (general.database_url or "").lower() in NO_DATABASE:
        general = replace(general, database_url=None)
    if general.database_url:
        database_target(general.database_url, f"{path}: general_settings.database_url")
    router_where = f"{path}: router_settings"
    router = _router_section(sections, path)
    return Config(
        path=path,
        deployments=deployments,
        model_group_alias=model_aliases(router, router_where),
        general=general,
        router=RouterSettings.from_config(router, router_where),
        redis=RedisSettings.from_config(router, router_where),
        default_limits=DefaultLimits.from_config(router, router_where),
        litellm=LitellmSettings.from_config(sections["litellm_settings"], f"{path}: litellm_settings"),
        passthrough=PassthroughSettings.from_config(
            sections["anthropic_passthrough"], f"{path}: anthropic_passthrough", env
        ),
        guardrails=load_guardrails(raw.get("guardrails"), f"{path}: guardrails"),
        batches=BatchSettings.from_config(sections["batch_settings"], f"{path}: batch_settings"),
        observability=ObservabilitySettings.from_config(
            sections["litellm_settings"], sections["general_settings"], path, env
        ),
        ignored=ignored,
        environment=environment,
    )


def _router_section(sections: dict[str, dict[str, Any]], path: str) -> dict[str, Any]:
    """router_settings, with the routing keys LiteLLM documents under litellm_settings under it."""
    litellm = sections["litellm_settings"]
    moved = {ours: litellm[theirs] for theirs, ours in LITELLM_ROUTER_KEYS.items() if theirs in litellm}
    if moved:
        RouterSettings.from_config(moved, f"{path}: litellm_settings")  # errors name where they are
    return {**moved, **sections["router_settings"]}


def _environment(value: object, path: str, env: Mapping[str, str]) -> dict[str, str]:
    """`environment_variables`: names to values, set in the process (and seen by os.environ/ refs)."""
    if value is None:
        return {}
    where = f"{path}: environment_variables"
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must map variable names to values")
    out = {}
    for name, v in value.items():
        if not isinstance(v, (str, int, float, bool)):
            raise ConfigError(f"{where}.{name}: must be a string or number, got {v!r}")
        resolved = _resolve(v, f"{where}.{name}", env)
        out[str(name)] = str(resolved).lower() if isinstance(resolved, bool) else str(resolved)
    return out


def _sections(raw: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    """The known sections, each a mapping (empty when absent or null)."""
    out: dict[str, dict[str, Any]] = {}
    for name in SECTION_NAMES:
        value = raw.get(name)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: {name}: must be a mapping")
        out[name] = value
    return out


def _deployments(entries: object, path: str, env: Mapping[str, str]) -> list[Deployment]:
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: model_list: must be a list")
    deployments = []
    for i, entry in enumerate(entries):
        where = f"{path}: model_list[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a mapping with model_name and params")
        only_if = entry.get("only_if_env")
        if only_if is not None and not env.get(str(only_if)):
            continue
        deployments.append(_deployment(entry, i, where, env))
    return deployments


def _deployment(entry: dict[str, Any], index: int, where: str, env: Mapping[str, str]) -> Deployment:
    name = entry.get("model_name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: model_name: required, a non-empty string")
    where = f"{where} (model_name {name!r})"
    if "params" in entry and "litellm_params" in entry:
        raise ConfigError(f"{where}: give params or litellm_params, not both")
    params = entry.get("params", entry.get("litellm_params"))
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: params: required, a mapping with at least `model`")
    params = _resolve(params, f"{where}: params", env)
    provider, upstream = _provider_model(params, name, where)
    api, default_base = PROVIDERS[provider]
    api_base = params.get("api_base", default_base)
    if api_base is not None and (
        not isinstance(api_base, str) or not api_base.startswith(("http://", "https://"))
    ):
        raise ConfigError(f"{where}: params.api_base: must be an http(s) URL, got {api_base!r}")
    if api in ("openai", "azure") and api_base is None:
        raise ConfigError(f"{where}: params.api_base: required for provider {provider!r}")
    info = entry.get("model_info")
    info = info if isinstance(info, dict) else {}
    return Deployment(
        id=str(info.get("id") or params.get("id") or f"{name}#{index}"),
        model_name=name,
        provider=provider,
        api=api,
        model=upstream,
        api_base=api_base.rstrip("/") if api_base else None,
        api_key=_api_key(params, where),
        timeout=_timeout(params, where),
        extra_headers=_headers(params, where),
        params=params,
        card=_card(info, f"{where}: model_info"),
    )


def _card(info: dict[str, Any], where: str) -> ModelCard:
    name = info.get("display_name")
    if name is not None and (not isinstance(name, str) or not name):
        raise ConfigError(f"{where}.display_name: must be a non-empty string")
    window = _tokens(info, "max_input_tokens", where)
    return ModelCard(name, window, _tokens(info, "max_output_tokens", where))


def _tokens(info: dict[str, Any], field: str, where: str) -> int | None:
    value = info.get(field)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
        raise ConfigError(f"{where}.{field}: must be a positive number of tokens, got {value!r}")
    return value


def _provider_model(params: dict[str, Any], name: str, where: str) -> tuple[str, str]:
    model = params.get("model")
    if not isinstance(model, str) or "/" not in model:
        raise ConfigError(
            f"{where}: params.model: required, as provider/model "
            f"(e.g. anthropic/claude-sonnet-4-5), got {model!r}"
        )
    provider, _, upstream = model.partition("/")
    if provider == "ollama":
        raise ConfigError(
            f"{where}: params.model: {model!r}: parley reaches Ollama through its OpenAI-compatible "
            f"API: write ollama_chat/{upstream} (api_base http://host:11434/v1)"
        )
    if provider not in PROVIDERS:
        raise ConfigError(
            f"{where}: params.model: unknown provider {provider!r}; known: {', '.join(sorted(PROVIDERS))}"
        )
    if "*" in upstream and "*" not in name:
        raise ConfigError(f"{where}: params.model has a `*` but model_name does not")
    return provider, upstream


def _api_key(params: dict[str, Any], where: str) -> str | None:
    api_key = params.get("api_key")
    if api_key is not None and not isinstance(api_key, str):
        raise ConfigError(f"{where}: params.api_key: must be a string")
    return api_key


def _timeout(params: dict[str, Any], where: str) -> float:
    timeout = params.get("timeout", DEFAULT_TIMEOUT)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise ConfigError(f"{where}: params.timeout: must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


def _headers(params: dict[str, Any], where: str) -> dict[str, str]:
    headers = params.get("extra_headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ConfigError(f"{where}: params.extra_headers: must map header names to strings")
    return dict(headers)


def _resolve(value: Any, where: str, env: Mapping[str, str]) -> Any:
    """Replace every `os.environ/NAME` string with the variable's value."""
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        if name not in env:
            raise ConfigError(f"{where}: environment variable {name} is not set (named by {value!r})")
        return env[name]
    if isinstance(value, dict):
        return {k: _resolve(v, f"{where}.{k}", env) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, f"{where}[{i}]", env) for i, v in enumerate(value)]
    return value
