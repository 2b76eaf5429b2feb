"""Which keys of a config file parley acts on, and the report of those it does not.

`ignored_keys(doc)` lists every other key by its dotted path with a short reason, e.g.
`litellm_settings.modify_params (LiteLLM setting parley does not support)`. Keys are
reported, not refused, except by `near_misses(doc)` (config.review): an unknown key close to a
known one, or anything near a security setting, is an error with "did you mean ...".

Adding a setting is one line: its name in the set of its section below.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from parley.config.batches import BATCH_KEYS
from parley.config.guardrails import ignored_guardrail_keys

UNKNOWN = "unknown key"
LITELLM = "LiteLLM setting parley does not support"

GENERAL = frozenset(
    {
        "master_key",
        "database_url",
        "max_request_size_mb",
        "max_response_size_mb",
        "stream_ping_interval",
        "max_stream_seconds",
        "key_cache_ttl",
        "spend_flush_interval",
        "spend_batch_size",
        "spend_journal",
        "spend_journal_dir",
        "spend_journal_fsync_ms",
        "budget_refresh_seconds",
        "budget_min_reply_tokens",
        "budget_input_margin",
        "database_pool_size",
        "database_max_overflow",
        "database_pool_timeout",
        "message_threads",
        "strict_config",
        "health_check_interval",  # config.observability
        "health_check_timeout",
    }
)
ROUTER = frozenset(
    {
        "routing_strategy",
        "routing_strategy_args",
        "num_retries",
        "retry_after",
        "max_retry_after",
        "allowed_fails",
        "allowed_fails_window",
        "cooldown_time",
        "timeout",
        "stream_timeout",
        "fallbacks",
        "context_window_fallbacks",
        "content_policy_fallbacks",
        "cooldown_sync_interval",
        "retry_backoff_initial",
        "retry_backoff_max",
        "model_group_alias",
        "default_limits",
        "redis_url",
        "redis_host",
        "redis_port",
        "redis_password",
        "redis_key_prefix",
        "redis_timeout",
        "redis_max_connections",
        "redis_lease_ms",
        "redis_lease_max_requests",
    }
)
LITELLM_SETTINGS = frozenset(
    {
        "cache",
        "cache_params",
        "num_retries",
        "fallbacks",
        "context_window_fallbacks",
        "content_policy_fallbacks",
        "allowed_fails",
        "request_timeout",
        "drop_params",
        "json_logs",
        "set_verbose",
        # config.observability
        "callbacks",
        "success_callback",
        "failure_callback",
        "metrics_require_key",
        "metrics_key_labels",
        "otel_capture_content",
        "callback_queue_size",
    }
)
CACHE_PARAMS = frozenset(
    {
        "type",
        "ttl",
        "max_entries",
        "url",
        "host",
        "port",
        "password",
        "namespace",
        "similarity_threshold",
        "semantic_scope",
        "semantic_tool_results",
        "semantic_default",
        "redis_semantic_cache_embedding_model",
    }
)
PASSTHROUGH = frozenset({"api_base", "api_key", "forward_client_key", "timeout"})
ENTRY = frozenset({"model_name", "params", "litellm_params", "model_info", "only_if_env"})
MODEL_INFO = frozenset({"id", "mode", "display_name", "max_input_tokens", "max_output_tokens"})
PARAMS = frozenset(
    {
        # config.loader
        "native_batches",  # parley.batches.native
        "semantic_cache",
        "vector_store_ids",
        "retrieval_top_k",
        "model",
        "api_base",
        "api_key",
        "timeout",
        "extra_headers",
        "id",
        # router
        "weight",
        "rpm",
        "tpm",
        "num_retries",
        "stream_timeout",
        "first_byte_timeout",
        "connect_timeout",
        # response cache, structured output bridge
        "cache",
        "supports_response_schema",
        # translate.openai_options
        "max_tokens_field",
        "stream_include_usage",
        "supports_top_k",
        "reasoning_field",
        "reasoning_effort",
        "supports_pdf",
        "user_field",
        "max_stop_sequences",
        "extra_body",
        "drop_params",
        # providers.bedrock_auth
        "aws_region_name",
        "region_name",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_profile_name",
        "aws_bedrock_runtime_endpoint",
        "model_id",
        # spend.pricing overrides
        "input_cost_per_token",
        "output_cost_per_token",
        "cache_creation_input_token_cost",
        "cache_creation_input_token_cost_above_1hr",
        "cache_read_input_token_cost",
        "base_model",
        # providers.google_auth, vertex, gemini, azure
        "vertex_project",
        "vertex_location",
        "vertex_credentials",
        "api_version",
        "azure_ad_token",
    }
)

# Where parley has the setting under another name or section.
HINTS = MappingProxyType(
    {
        "general_settings.set_verbose": "litellm_settings.set_verbose or --detailed_debug",
        "general_settings.json_logs": "litellm_settings.json_logs",
        "general_settings.database_connection_pool_limit": "general_settings.database_pool_size",
        "general_settings.database_connection_timeout": "general_settings.database_pool_timeout",
    }
)

LITELLM_GENERAL = frozenset(
    {
        "alerting",
        "alerting_threshold",
        "alerting_args",
        "allowed_routes",
        "allowed_ips",
        "allow_requests_on_db_unavailable",
        "background_health_checks",
        "completion_model",
        "custom_auth",
        "custom_key_generate",
        "custom_sso",
        "database_connection_pool_limit",
        "database_connection_timeout",
        "disable_master_key_return",
        "disable_reset_budget",
        "disable_retry_on_max_parallel_request_limit_error",
        "disable_spend_logs",
        "embedding_model",
        "enable_jwt_auth",
        "enforce_rbac",
        "enforce_user_param",
        "forward_client_headers_to_llm_api",
        "global_max_parallel_requests",
        "health_check_details",
        "infer_model_from_keys",
        "key_management_system",
        "key_management_settings",
        "litellm_key_header_name",
        "max_parallel_requests",
        "max_response_size_mb",
        "maximum_spend_logs_retention_period",
        "moderation_model",
        "pass_through_endpoints",
        "proxy_batch_write_at",
        "proxy_budget_rescheduler_max_time",
        "proxy_budget_rescheduler_min_time",
        "public_routes",
        "service_account_settings",
        "store_model_in_db",
        "store_prompts_in_spend_logs",
        "ui_access_mode",
        "use_client_credentials_pass_through_routes",
        "user_header_name",
    }
)
LITELLM_ROUTER = frozenset(
    {
        "allowed_fails_policy",
        "caching_groups",
        "cache_responses",
        "cache_kwargs",
        "client_ttl",
        "default_litellm_params",
        "default_max_parallel_requests",
        "default_priority",
        "disable_cooldowns",
        "enable_pre_call_checks",
        "enable_tag_filtering",
        "max_fallbacks",
        "model_group_retry_policy",
        "optional_pre_call_checks",
        "polling_interval",
        "provider_budget_config",
        "retry_policy",
        "router_general_settings",
        "set_verbose",
        "debug_level",
        "tag_filtering_match_any",
        "ignore_invalid_deployments",
    }
)
LITELLM_LITELLM = frozenset(
    {
        "service_callback",
        "drop_params",
        "modify_params",
        "set_verbose",
        "json_logs",
        "turn_off_message_logging",
        "redact_messages_in_exceptions",
        "redact_user_api_key_info",
        "request_timeout",
        "num_retries",
        "fallbacks",
        "context_window_fallbacks",
        "content_policy_fallbacks",
        "default_fallbacks",
        "allowed_fails",
        "max_budget",
        "budget_duration",
        "default_team_settings",
        "default_internal_user_params",
        "default_key_generate_params",
        "upperbound_key_generate_params",
        "key_generation_settings",
        "telemetry",
        "force_ipv4",
        "ssl_verify",
        "enable_preview_features",
        "return_response_headers",
        "disable_end_user_cost_tracking",
        "enable_json_schema_validation",
        "callback_settings",
        "mcp_aliases",
        "disable_token_counter",
        "cache_control",
    }
)
LITELLM_CACHE_PARAMS = frozenset(
    {
        "supported_call_types",
        "mode",
        "default_in_memory_ttl",
        "default_in_redis_ttl",
        "max_connections",
        "disk_cache_dir",
        "s3_bucket_name",
        "s3_region_name",
        "s3_path",
        "qdrant_collection_name",
        "qdrant_quantization_config",
    }
)
LITELLM_PARAMS = frozenset(
    {
        "api_version",
        "organization",
        "max_retries",
        "custom_llm_provider",
        "aws_role_name",
        "vertex_project",
        "vertex_location",
        "vertex_credentials",
        "drop_params",
        "additional_drop_params",
        "max_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "tags",
        "mock_response",
        "input_cost_per_second",
        "output_cost_per_second",
        "max_parallel_requests",
        "merge_reasoning_content_in_choices",
        "use_in_pass_through",
        "litellm_credential_name",
        "tenant_id",
        "client_id",
        "client_secret",
        "azure_ad_token",
        "headers",
        "base_model",
        "max_budget",
        "budget_duration",
        "stream",
        "top_k",
        "n",
        "user",
        "logit_bias",
        "frequency_penalty",
        "presence_penalty",
        "response_format",
        "thinking",
        "api_type",
        "rpm_limit",
        "tpm_limit",
    }
)
LITELLM_SECTIONS = frozenset(
    {
        "callback_settings",
        "credential_list",
        "mcp_servers",
        "assistant_settings",
        "finetune_settings",
        "files_settings",
        "vector_store_registry",
        "search_tools",
        "include",
    }
)

# top-level sections parley acts on besides those in SECTIONS
TOP = frozenset({"model_list", "environment_variables", "guardrails"})

# section -> (keys parley acts on, LiteLLM keys it does not)
SECTIONS = MappingProxyType(
    {
        "general_settings": (GENERAL, LITELLM_GENERAL),
        "router_settings": (ROUTER, LITELLM_ROUTER),
        "litellm_settings": (LITELLM_SETTINGS, LITELLM_LITELLM),
        "anthropic_passthrough": (PASSTHROUGH, frozenset[str]()),
        "batch_settings": (BATCH_KEYS, frozenset[str]()),
    }
)


@dataclass(frozen=True)
class Unacted:
    """A key parley does not act on: where, why, and the names that belong at that place."""

    path: str
    key: str
    reason: str
    candidates: frozenset[str]

    @property
    def line(self) -> str:
        return f"{self.path} ({self.reason})"


def ignored_keys(doc: Mapping[str, Any]) -> list[str]:
    """`path (reason)` for every key of `doc` that parley does not act on, in file order."""
    return [u.line for u in unacted(doc)]


def unacted(doc: Mapping[str, Any]) -> Iterator[Unacted]:
    """Every key of `doc` that parley does not act on, in file order."""
    top = TOP | frozenset(SECTIONS) | LITELLM_SECTIONS
    for name, value in doc.items():
        if name == "model_list":
            yield from _model_list(value)
        elif name == "guardrails":
            for path, reason in ignored_guardrail_keys(value):
                key = path.rsplit(".", 1)[-1]
                yield Unacted(path, key, reason, frozenset())
        elif name in TOP:
            continue
        elif name in SECTIONS:
            known, litellm = SECTIONS[name]
            yield from _section(name, value, known, litellm)
            yield from _nested(name, _mapping(value))
        else:
            litellm_section = name in LITELLM_SECTIONS
            reason = "LiteLLM section parley does not support" if litellm_section else "unknown section"
            yield Unacted(str(name), str(name), reason, top)


def _nested(name: str, section: Mapping[str, Any]) -> Iterator[Unacted]:
    """Keys inside the mappings parley reads only in part."""
    if name == "litellm_settings":
        yield from _section(
            f"{name}.cache_params", section.get("cache_params"), CACHE_PARAMS, LITELLM_CACHE_PARAMS
        )
    elif name == "router_settings":
        yield from _section(
            f"{name}.routing_strategy_args",
            section.get("routing_strategy_args"),
            frozenset({"lowest_latency_buffer"}),
            frozenset({"ttl", "max_latency_list_size"}),
        )


def _section(where: str, value: object, known: frozenset[str], litellm: frozenset[str]) -> Iterator[Unacted]:
    for key in _mapping(value):
        if key in known:
            continue
        path = f"{where}.{key}"
        reason = LITELLM if key in litellm else UNKNOWN
        hint = HINTS.get(path)
        yield Unacted(path, str(key), f"{reason}; parley reads {hint}" if hint else reason, known | litellm)


def _model_list(entries: object) -> Iterator[Unacted]:
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        where = f"model_list[{i}]"
        for key in _mapping(entry):
            if key not in ENTRY:
                yield Unacted(f"{where}.{key}", str(key), UNKNOWN, ENTRY)
        entry = _mapping(entry)
        for key in ("params", "litellm_params"):
            for name in _mapping(entry.get(key)):
                if name not in PARAMS:
                    litellm = name in LITELLM_PARAMS
                    reason = "LiteLLM param parley does not support" if litellm else UNKNOWN
                    yield Unacted(f"{where}.{key}.{name}", str(name), reason, PARAMS | LITELLM_PARAMS)
        for name in _mapping(entry.get("model_info")):
            if name not in MODEL_INFO:
                yield Unacted(
                    f"{where}.model_info.{name}", str(name), "model_info parley does not use", frozenset()
                )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}
