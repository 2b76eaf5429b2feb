"""A configured upstream deployment, and the target the router picks for one request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ModelCard:
    """What `model_info` says about a model for clients that list models (`/v1/models`)."""

    display_name: str | None = None
    max_input_tokens: int | None = None  # the context window
    max_output_tokens: int | None = None


@dataclass(frozen=True)
class Deployment:
    """One upstream target serving the client-facing `model_name` (which may hold a `*`)."""

    id: str
    model_name: str
    provider: str  # key of PROVIDERS, e.g. "anthropic", "deepseek"
    api: str  # the wire protocol spoken upstream: "anthropic", "openai" or "mock"
    model: str  # upstream model name, may hold a `*` filled from the client's model
    api_base: str | None
    api_key: str | None
    timeout: float
    extra_headers: Mapping[str, str]
    params: Mapping[str, Any]  # the whole params mapping, for per-provider switches
    card: ModelCard = ModelCard()  # from `model_info`

    def upstream_model(self, wildcard_part: str | None) -> str:
        if wildcard_part is not None and "*" in self.model:
            return self.model.replace("*", wildcard_part, 1)
        return self.model


@dataclass(frozen=True, slots=True)
class Target:
    """A deployment chosen for a request, with the upstream model name filled in."""

    deployment: Deployment
    upstream_model: str
