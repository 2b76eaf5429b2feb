"""Per-deployment switches for OpenAI-compatible servers, read from a deployment's `params`.

Servers differ in what they accept; each switch has a default chosen by provider prefix and can
be set in the config (see docs/providers.md):

    max_tokens_field       "max_tokens" | "max_completion_tokens"
    stream_include_usage   send stream_options.include_usage (bool)
    supports_top_k         forward top_k as a body field (bool)
    reasoning_field        history thinking goes in this assistant-message field
                           ("reasoning_content" | "reasoning"), or null to drop it
    reasoning_effort       map thinking / output_config.effort to reasoning_effort (bool)
    supports_pdf           PDF documents become `file` parts; otherwise a 400 (bool)
    user_field             metadata.user_id goes to "user" | "safety_identifier" | null
    max_stop_sequences     cap on `stop` entries (int, null for no cap)
    extra_body             mapping merged into every request body
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from parley.config import ConfigError

_LOCAL_SERVERS = frozenset({"vllm", "hosted_vllm", "llamacpp", "ollama_chat", "together_ai"})


@dataclass(frozen=True, slots=True)
class OpenAIOptions:
    max_tokens_field: str = "max_tokens"
    stream_include_usage: bool = True
    supports_top_k: bool = False
    reasoning_field: str | None = None
    reasoning_effort: bool = True
    supports_pdf: bool = False
    user_field: str | None = "user"
    max_stop_sequences: int | None = None
    extra_body: Mapping[str, Any] = field(default_factory=dict)


def is_openai_service(api_base: Any) -> bool:
    """Whether `api_base` is OpenAI's own API (or unset, which means it); any other address is an
    OpenAI-compatible server (llama.cpp, vLLM, Ollama, LM Studio...) with that server's habits."""
    if not isinstance(api_base, str) or not api_base:
        return True
    host = api_base.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0].lower()
    return host == "api.openai.com" or host.endswith(".openai.azure.com")


def defaults_for(provider: str, api_base: Any = None) -> dict[str, Any]:
    """The switches' defaults for a provider prefix such as "openai" or "hosted_vllm". `openai/`
    pointed at another server gets the local servers' defaults: llama.cpp's server ignores
    `max_completion_tokens` and would generate until its context is full."""
    if provider == "openai" and not is_openai_service(api_base):
        return {"supports_top_k": True}
    if provider in ("openai", "azure"):
        return {"max_tokens_field": "max_completion_tokens", "supports_pdf": True, "max_stop_sequences": 4}
    if provider in _LOCAL_SERVERS:
        return {"supports_top_k": True}
    return {}


_CHOICES = {
    "max_tokens_field": ("max_tokens", "max_completion_tokens"),
    "reasoning_field": (None, "reasoning_content", "reasoning"),
    "user_field": (None, "user", "safety_identifier"),
}
_BOOLS = ("stream_include_usage", "supports_top_k", "reasoning_effort", "supports_pdf")


def options_from_params(provider: str, params: Mapping[str, Any]) -> OpenAIOptions:
    """Build the options for one deployment; bad values raise ConfigError naming the switch."""
    values = defaults_for(provider, params.get("api_base"))
    for name, allowed in _CHOICES.items():
        if name in params:
            if params[name] not in allowed:
                raise ConfigError(f"params.{name}: must be one of {allowed}, got {params[name]!r}")
            values[name] = params[name]
    for name in _BOOLS:
        if name in params:
            if not isinstance(params[name], bool):
                raise ConfigError(f"params.{name}: must be true or false, got {params[name]!r}")
            values[name] = params[name]
    if "max_stop_sequences" in params:
        cap = params["max_stop_sequences"]
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 0):
            raise ConfigError("params.max_stop_sequences: must be a non-negative integer or null")
        values["max_stop_sequences"] = cap
    if "extra_body" in params:
        extra = params["extra_body"]
        if not isinstance(extra, dict):
            raise ConfigError("params.extra_body: must be a mapping of body fields")
        values["extra_body"] = dict(extra)
    return OpenAIOptions(**values)
