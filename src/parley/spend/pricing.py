"""Prices per token for a deployment, and the cost of a call from its Usage.

The bundled table (`parley/data/prices.json`, USD per million tokens) covers current Anthropic,
OpenAI and Amazon Bedrock models (Bedrock ids such as `us.anthropic.claude-...-v1:0` included); a
deployment's params override it with LiteLLM's per-token names
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
# A Bedrock model id: optional geographic or global inference-profile prefix, provider, name, version.
_BEDROCK_ID = re.compile(
    r"^(?:(us|eu|apac|au|jp|ca|us-gov|global)\.)?"
    r"((?:anthropic|meta|amazon|mistral|cohere|ai21|deepseek|openai|qwen|writer)\..+?)(?:-v\d+(?::\d+)?)?$"
)
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


_RATES = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")


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
        regional = raw.get("_bedrock_regional") or {}
        self._regional_factor = float(regional.get("factor", 1.0))
        self._regional = frozenset(regional.get("models") or ())

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
        match = _BEDROCK_ID.match(name)
        return self._bedrock(*match.groups()) if match else Price()

    def _bedrock(self, geo: str | None, name: str) -> Price:
        """A Bedrock id's price: Claude from the Anthropic table (with the regional premium where
        one applies), other models from the Bedrock table."""
        if not name.startswith("anthropic."):
            return self.for_model(name)
        name = name[len("anthropic.") :]
        price = self.for_model(name)
        return price if geo == "global" else self._regional_price(name, price)

    def _regional_price(self, name: str, price: Price) -> Price:
        """`price` with the premium Bedrock and Vertex list for Claude's regional endpoints."""
        family = _DATE_SUFFIX.sub("", name)
        if family not in self._regional or not price.known:
            return price
        factor = self._regional_factor
        values = {f: getattr(price, f) * factor for f in _RATES}
        return Price(**values, batch_discount=price.batch_discount, known=True)

    def for_deployment(self, deployment: Any, upstream_model: str | None) -> Price:
        """The price of `upstream_model` on `deployment`, its params' overrides applied."""
        if deployment is None:
            return self.for_model(upstream_model)
        cache_key = f"{deployment.id}\x00{upstream_model}"
        price = self._deployments.get(cache_key)
        if price is None:
            if deployment.api in ("mock", "local"):  # run here: free
                price = Price(known=True)
            else:
                named = deployment.params.get("base_model")  # LiteLLM's: Azure deployments' names are free
                model = named if isinstance(named, str) else upstream_model or deployment.model
                price = self.for_model(model)
                if deployment.api == "vertex" and deployment.params.get("vertex_location") != "global":
                    price = self._regional_price(model, price)
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
