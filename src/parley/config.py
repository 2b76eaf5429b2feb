"""Load and validate the YAML config (LiteLLM-compatible for the parts we support).

Errors name the file, the entry and the field. Every `os.environ/NAME` value is resolved at load
time, so a missing variable fails at startup rather than at the first request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

from parley.core.deployment import Deployment

ENV_PREFIX = "os.environ/"
DEFAULT_TIMEOUT = 600.0
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024

# provider prefix -> (wire protocol, default api_base)
PROVIDERS: dict[str, tuple[str, str | None]] = {
    "anthropic": ("anthropic", "https://api.anthropic.com"),
    "openai": ("openai", "https://api.openai.com/v1"),
    "mock": ("mock", None),
    # OpenAI-compatible servers known by their LiteLLM prefixes
    "hosted_vllm": ("openai", None),
    "vllm": ("openai", None),
    "deepseek": ("openai", "https://api.deepseek.com/v1"),
    "openrouter": ("openai", "https://openrouter.ai/api/v1"),
    "groq": ("openai", "https://api.groq.com/openai/v1"),
    "together_ai": ("openai", "https://api.together.xyz/v1"),
    "ollama_chat": ("openai", "http://127.0.0.1:11434/v1"),
    "llamacpp": ("openai", "http://127.0.0.1:8080/v1"),
}


class ConfigError(ValueError):
    """The config cannot be used; the message says where and why."""




@dataclass
class Config:
    path: str | None
    deployments: list[Deployment]
    master_key: str | None = None
    database_url: str | None = None
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    model_group_alias: dict[str, str] = field(default_factory=dict)
    general_settings: dict[str, Any] = field(default_factory=dict)
    router_settings: dict[str, Any] = field(default_factory=dict)
    litellm_settings: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> dict[str, Any]:
        """Any top-level mapping of the file (env references resolved), empty if absent."""
        value = self.raw.get(name)
        return value if isinstance(value, dict) else {}


def load_config(path: str, env: Mapping[str, str] | None = None) -> Config:
    """Read `path` and return a validated Config."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return build_config(doc if doc is not None else {}, path, env)


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
    env = os.environ if env is None else env
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    entries = doc.get("model_list") or []
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
    general = _resolve(doc.get("general_settings") or {}, f"{path}: general_settings", env)
    router = _resolve(doc.get("router_settings") or {}, f"{path}: router_settings", env)
    litellm = _resolve(doc.get("litellm_settings") or {}, f"{path}: litellm_settings", env)
    raw = {k: v for k, v in doc.items() if k != "model_list"}
    raw = _resolve(raw, path, env)
    for name, section in (("general_settings", general), ("router_settings", router),
                          ("litellm_settings", litellm)):
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: {name}: must be a mapping")
    master_key = general.get("master_key") or env.get("PARLEY_MASTER_KEY") or None
    if master_key is not None and (not isinstance(master_key, str) or not master_key):
        raise ConfigError(f"{path}: general_settings.master_key: must be a non-empty string")
    max_bytes = general.get("max_request_size_mb")
    max_request_bytes = DEFAULT_MAX_REQUEST_BYTES
    if max_bytes is not None:
        if not isinstance(max_bytes, (int, float)) or isinstance(max_bytes, bool) or max_bytes <= 0:
            raise ConfigError(f"{path}: general_settings.max_request_size_mb: must be a positive number")
        max_request_bytes = int(max_bytes * 1024 * 1024)
    aliases = router.get("model_group_alias") or {}
    if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        raise ConfigError(f"{path}: router_settings.model_group_alias: must map names to model names")
    database_url = general.get("database_url") or env.get("DATABASE_URL")
    return Config(
        path=path,
        deployments=deployments,
        master_key=master_key,
        database_url=database_url,
        max_request_bytes=max_request_bytes,
        model_group_alias=dict(aliases),
        general_settings=general,
        router_settings=router,
        litellm_settings=litellm,
        raw=raw,
    )


def _deployment(entry: dict, index: int, where: str, env: Mapping[str, str]) -> Deployment:
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
    model = params.get("model")
    if not isinstance(model, str) or "/" not in model:
        raise ConfigError(f"{where}: params.model: required, as provider/model "
                          f"(e.g. anthropic/claude-sonnet-4-5), got {model!r}")
    provider, _, upstream = model.partition("/")
    if provider not in PROVIDERS:
        raise ConfigError(f"{where}: params.model: unknown provider {provider!r}; "
                          f"known: {', '.join(sorted(PROVIDERS))}")
    api, default_base = PROVIDERS[provider]
    api_base = params.get("api_base", default_base)
    if api_base is not None and (not isinstance(api_base, str) or
                                 not api_base.startswith(("http://", "https://"))):
        raise ConfigError(f"{where}: params.api_base: must be an http(s) URL, got {api_base!r}")
    if api == "openai" and api_base is None:
        raise ConfigError(f"{where}: params.api_base: required for provider {provider!r}")
    api_key = params.get("api_key")
    if api_key is not None and not isinstance(api_key, str):
        raise ConfigError(f"{where}: params.api_key: must be a string")
    timeout = params.get("timeout", DEFAULT_TIMEOUT)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise ConfigError(f"{where}: params.timeout: must be a positive number of seconds, got {timeout!r}")
    headers = params.get("extra_headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in headers.items()):
        raise ConfigError(f"{where}: params.extra_headers: must map header names to strings")
    if "*" in upstream and "*" not in name:
        raise ConfigError(f"{where}: params.model has a `*` but model_name does not")
    info = entry.get("model_info") if isinstance(entry.get("model_info"), dict) else {}
    dep_id = str(info.get("id") or params.get("id") or f"{name}#{index}")
    return Deployment(
        id=dep_id,
        model_name=name,
        provider=provider,
        api=api,
        model=upstream,
        api_base=api_base.rstrip("/") if api_base else None,
        api_key=api_key,
        timeout=float(timeout),
        extra_headers=dict(headers),
        params=params,
    )


def _resolve(value: Any, where: str, env: Mapping[str, str]) -> Any:
    """Replace every `os.environ/NAME` string with the variable's value."""
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX):]
        if name not in env:
            raise ConfigError(f"{where}: environment variable {name} is not set "
                              f"(named by {value!r})")
        return env[name]
    if isinstance(value, dict):
        return {k: _resolve(v, f"{where}.{k}", env) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, f"{where}[{i}]", env) for i, v in enumerate(value)]
    return value
