"""Prices per token for a deployment, and the cost of a call from its Usage.

The bundled table (`parley/data/prices.json`, USD per million tokens) covers current Anthropic and
OpenAI models; a deployment's params override it with LiteLLM's per-token names
(`input_cost_per_token`, `output_cost_per_token`, `cache_creation_input_token_cost`,
`cache_creation_input_token_cost_above_1hr`, `cache_read_input_token_cost`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from parley.core.usage import Usage

_DATE_SUFFIX = re.compile(r"[-@](\d{8}|latest)$")  # Vertex writes claude-x@20250929
_PER_MTOK = 1_000_000.0
_OVERRIDES = {  # params name -> Price field
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_creation_input_token_cost": "cache_write_5m",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h",
    "cache_read_input_token_cost": "cache_read",
}


@dataclass(frozen=True, slots=True)
class Price:
    """USD per token by kind. Unknown models price at zero (`known` is False)."""

    input: float = 0.0
    output: float = 0.0
    cache_write_5m: float = 0.0
    cache_write_1h: float = 0.0
    cache_read: float = 0.0
    batch_discount: float = 0.0
    known: bool = False

    def cost(self, usage: Usage) -> float:
        """USD for `usage`, every kind of token at its own rate."""
        writes_1h = min(usage.cache_creation_1h, usage.cache_creation_input_tokens)
        writes_5m = usage.cache_creation_input_tokens - writes_1h  # incl. writes without breakdown
        return (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + writes_5m * self.cache_write_5m
            + writes_1h * self.cache_write_1h
            + usage.cache_read_input_tokens * self.cache_read
        )

    @property
    def max_input(self) -> float:
        """The highest price an input token can cost (a 1 h cache write when that is dearest)."""
        return max(self.input, self.cache_write_5m, self.cache_write_1h)


def _from_mtok(entry: Mapping[str, Any]) -> Price:
    inp = float(entry.get("input", 0)) / _PER_MTOK
    return Price(
        input=inp,
        output=float(entry.get("output", 0)) / _PER_MTOK,
        cache_write_5m=float(entry.get("cache_write_5m", entry.get("input", 0))) / _PER_MTOK,
        cache_write_1h=float(entry.get("cache_write_1h", entry.get("input", 0))) / _PER_MTOK,
        cache_read=float(entry.get("cache_read", entry.get("input", 0))) / _PER_MTOK,
        batch_discount=float(entry.get("batch_discount", 0)),
        known=True,
    )


class PriceTable:
    """Model name -> Price, with per-deployment overrides cached by deployment id."""

    def __init__(self, table: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        raw = table if table is not None else load_bundled()
        self._models: dict[str, Price] = {}
        for provider, models in raw.items():
            if provider.startswith("_") or not isinstance(models, dict):
                continue
            for name, entry in models.items():
                self._models[name] = _from_mtok(entry)
        self._by_prefix = sorted(self._models, key=len, reverse=True)
        self._deployments: dict[str, Price] = {}

    def for_model(self, model: str | None) -> Price:
        if not model:
            return Price()
        name = model.rsplit("/", 1)[-1]
        if name in self._models:
            return self._models[name]
        base = _DATE_SUFFIX.sub("", name)
        if base in self._models:
            return self._models[base]
        for prefix in self._by_prefix:
            if base.startswith(prefix):
                return self._models[prefix]
        return Price()

    def for_deployment(self, deployment: Any, upstream_model: str | None) -> Price:
        """The price of `upstream_model` on `deployment`, its params' overrides applied."""
        if deployment is None:
            return self.for_model(upstream_model)
        cache_key = f"{deployment.id}\x00{upstream_model}"
        price = self._deployments.get(cache_key)
        if price is None:
            if deployment.api == "mock":
                price = Price(known=True)
            else:
                named = deployment.params.get("base_model")  # LiteLLM's: Azure deployments' names are free
                price = self.for_model(
                    named if isinstance(named, str) else upstream_model or deployment.model
                )
            price = apply_overrides(price, deployment.params)
            if len(self._deployments) > 4096:
                self._deployments.clear()
            self._deployments[cache_key] = price
        return price


def apply_overrides(price: Price, params: Mapping[str, Any]) -> Price:
    changes: dict[str, Any] = {}
    for name, field in _OVERRIDES.items():
        value = params.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            changes[field] = float(value)
    if not changes:
        return price
    if "input" in changes:  # cache rates default to the overridden input rate when not given
        for field in ("cache_write_5m", "cache_write_1h", "cache_read"):
            if not price.known:
                changes.setdefault(field, changes["input"])
    values = {f: getattr(price, f) for f in Price.__slots__}
    values.update(changes)
    values["known"] = True
    return Price(**values)


def load_bundled() -> dict[str, Any]:
    with resources.files("parley").joinpath("data", "prices.json").open("rb") as f:
        return json.load(f)
