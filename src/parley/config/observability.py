"""Typed settings for metrics, traces and logging callbacks (`litellm_settings`) and model health
(`general_settings`).

LiteLLM's `callbacks`, `success_callback` and `failure_callback` name what to turn on:
`prometheus` (the `/metrics` endpoint), `otel` and the names parley sends through OTLP
(`OTLP_CALLBACKS`: Langfuse, Arize, ... all read OTLP), or a Python path `module.attr` to a
callback object or class (`custom_callbacks`). Anything else is a one-line error at load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from parley.config.fields import ConfigError, Fields

# Logging integrations that accept OTLP traces: each turns on the OpenTelemetry exporter; where the
# spans go is the standard OTEL_EXPORTER_OTLP_* environment (the vendor's OTLP endpoint).
OTLP_CALLBACKS = frozenset(
    {
        "otel",
        "opentelemetry",
        "langfuse",
        "langfuse_otel",
        "arize",
        "arize_phoenix",
        "phoenix",
        "langtrace",
        "logfire",
        "braintrust",
        "traceloop",
        "openmeter",
        "honeycomb",
        "signoz",
        "datadog",
        "lmnr",
        "levo",
    }
)
PROMETHEUS = "prometheus"


@dataclass(frozen=True)
class ObservabilitySettings:
    prometheus: bool = False  # GET /metrics
    metrics_require_key: bool = False  # /metrics needs the master key
    metrics_key_labels: bool = False  # key alias and team as labels of requests and spend
    otel: bool = False  # OpenTelemetry traces over OTLP
    otel_capture_content: bool = False  # message content on spans (after guardrails)
    custom_callbacks: tuple[str, ...] = ()  # module.attr paths, called on success and failure
    success_only: tuple[str, ...] = ()  # ... of those, the ones named only in success_callback
    failure_only: tuple[str, ...] = ()  # ... and only in failure_callback
    callback_queue_size: int = 10_000
    health_check_interval: float = 300.0  # seconds a /health result is reused
    health_check_timeout: float = 10.0

    @classmethod
    def from_config(
        cls, litellm: Mapping[str, Any], general: Mapping[str, Any], path: str, env: Mapping[str, str]
    ) -> ObservabilitySettings:
        """From `litellm_settings` (callbacks, metrics, traces) and `general_settings` (health)."""
        where = f"{path}: litellm_settings"
        f, g = Fields(litellm, where), Fields(general, f"{path}: general_settings")
        both = _names(f, "callbacks")
        success = _names(f, "success_callback")
        failure = _names(f, "failure_callback")
        every = both + success + failure
        paths = [n for n in dict.fromkeys(every) if "." in n]
        for name in every:
            if "." not in name and name != PROMETHEUS and name not in OTLP_CALLBACKS:
                raise ConfigError(
                    f"{where}: callback {name!r} is not supported; use prometheus, one of "
                    f"{', '.join(sorted(OTLP_CALLBACKS))} (sent over OTLP), or module.attr of a Python "
                    "callback"
                )
        capture = env.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").lower() == "true"
        return cls(
            prometheus=PROMETHEUS in every,
            metrics_require_key=f.flag("metrics_require_key", False),
            metrics_key_labels=f.flag("metrics_key_labels", False),
            otel=any(n in OTLP_CALLBACKS for n in every),
            otel_capture_content=f.flag("otel_capture_content", capture),
            custom_callbacks=tuple(paths),
            success_only=tuple(p for p in paths if p in success and p not in both and p not in failure),
            failure_only=tuple(p for p in paths if p in failure and p not in both and p not in success),
            callback_queue_size=f.integer("callback_queue_size", 10_000, positive=True),
            health_check_interval=g.number("health_check_interval", 300.0, positive=True),
            health_check_timeout=g.number("health_check_timeout", 10.0, positive=True),
        )


def _names(f: Fields, name: str) -> list[str]:
    value = f.values.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise f.fail(name, "a list of callback names", value)
    return [v.strip() for v in value]
