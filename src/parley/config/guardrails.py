"""The top-level `guardrails:` list, in LiteLLM's shape, typed and validated at load.

    guardrails:
      - guardrail_name: pii
        litellm_params:
          guardrail: parley_pii            # or content_filter / litellm_content_filter / prompt_injection
          mode: pre_call                   # pre_call | post_call | during_call | logging_only, or a list
          default_on: true
          fail_open: false
          pii_entities_config: {EMAIL_ADDRESS: MASK, US_SSN: BLOCK}
          output_parse_pii: true

Errors name the entry and the field; keys parley does not act on are reported (`ignored_keys`).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from parley.config.fields import ConfigError, Fields

MODES = ("pre_call", "post_call", "during_call", "logging_only")
ENGINES = {
    "parley_pii": "pii",
    "presidio": "pii",
    "content_filter": "content",
    "litellm_content_filter": "content",
    "prompt_injection": "injection",
}
PII_ACTIONS = ("MASK", "REDACT", "BLOCK")
CONTENT_ACTIONS = ("block", "mask")
ENTRY_KEYS = frozenset({"guardrail_name", "litellm_params", "guardrail_info"})
COMMON_KEYS = frozenset({"guardrail", "mode", "default_on", "fail_open"})
ENGINE_KEYS = {
    "pii": frozenset(
        {"pii_entities_config", "output_parse_pii", "patterns", "default_action", "phone_regions"}
    ),
    "content": frozenset({"blocked_words", "patterns", "categories"}),
    "injection": frozenset({"threshold", "screen_tool_results", "llm_check_model"}),
}
# The entities parley_pii recognizes (Presidio's names where Presidio has one).
PII_ENTITIES = frozenset(
    {
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "CREDIT_CARD",
        "IBAN_CODE",
        "IP_ADDRESS",
        "US_SSN",
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "AWS_ACCESS_KEY",
        "AWS_SECRET_KEY",
        "GITHUB_TOKEN",
        "SLACK_TOKEN",
        "GOOGLE_API_KEY",
        "PRIVATE_KEY",
        "JWT",
    }
)
# The entities Presidio's English pattern recognizers find (presidio-analyzer 2.2; no NER model,
# so no PERSON, LOCATION, ORGANIZATION, NRP). Without pii_entities_config: PRESIDIO_DEFAULT.
PRESIDIO_ENTITIES = frozenset(
    {
        "CREDIT_CARD",
        "CRYPTO",
        "DATE_TIME",
        "EMAIL_ADDRESS",
        "IBAN_CODE",
        "IP_ADDRESS",
        "MAC_ADDRESS",
        "MEDICAL_LICENSE",
        "PHONE_NUMBER",
        "UK_NHS",
        "URL",
        "US_BANK_NUMBER",
        "US_DRIVER_LICENSE",
        "US_ITIN",
        "US_PASSPORT",
        "US_SSN",
        "UUID",
    }
)
PRESIDIO_DEFAULT = frozenset(
    {"CREDIT_CARD", "CRYPTO", "EMAIL_ADDRESS", "IBAN_CODE", "IP_ADDRESS", "PHONE_NUMBER", "US_SSN"}
)
LITELLM_KEYS = frozenset(
    {"api_key", "api_base", "presidio_analyzer_api_base", "presidio_anonymizer_api_base"}
)


@dataclass(frozen=True)
class Pattern:
    """A named regex with its action (PII: MASK/REDACT/BLOCK; content: block/mask)."""

    name: str
    regex: re.Pattern[str]
    action: str


@dataclass(frozen=True)
class Keyword:
    word: str
    action: str  # block | mask
    rule: str  # the rule id a refusal names


@dataclass(frozen=True)
class GuardrailSpec:
    name: str
    engine: str  # the `guardrail:` value as written
    kind: str  # pii | content | injection
    modes: frozenset[str]
    default_on: bool = False
    fail_open: bool = False
    entities: Mapping[str, str] = field(default_factory=dict)  # PII entity -> MASK/REDACT/BLOCK
    output_parse_pii: bool = False
    patterns: tuple[Pattern, ...] = ()
    keywords: tuple[Keyword, ...] = ()
    phone_regions: tuple[str, ...] = ("US",)
    threshold: float = 1.0  # prompt injection: the score that blocks
    screen_tool_results: bool = True
    llm_check_model: str | None = None  # prompt injection: a model asked for a second opinion

    @property
    def on_input(self) -> bool:
        return bool(self.modes & {"pre_call", "during_call"})

    @property
    def on_output(self) -> bool:
        return "post_call" in self.modes

    @property
    def logging_only(self) -> bool:
        return self.modes == frozenset({"logging_only"})

    def public(self) -> dict[str, Any]:
        """The entry as `GET /guardrails/list` shows it (no secrets: none are read)."""
        params: dict[str, Any] = {
            "guardrail": self.engine,
            "mode": sorted(self.modes) if len(self.modes) > 1 else next(iter(self.modes)),
            "default_on": self.default_on,
        }
        if self.kind == "pii":
            params["pii_entities_config"] = dict(self.entities)
            params["output_parse_pii"] = self.output_parse_pii
        if self.kind == "injection":
            params["threshold"] = self.threshold
            if self.llm_check_model:
                params["llm_check_model"] = self.llm_check_model
        return {"guardrail_name": self.name, "litellm_params": params, "guardrail_info": {"kind": self.kind}}


def load_guardrails(value: object, where: str) -> tuple[GuardrailSpec, ...]:
    """The validated `guardrails:` list (empty when absent)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{where}: must be a list of {{guardrail_name, litellm_params}}")
    specs: list[GuardrailSpec] = []
    for i, entry in enumerate(value):
        spec = _entry(entry, f"{where}[{i}]")
        if any(s.name == spec.name for s in specs):
            raise ConfigError(f"{where}[{i}]: guardrail_name {spec.name!r} is used twice")
        specs.append(spec)
    return tuple(specs)


def _entry(entry: object, where: str) -> GuardrailSpec:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a mapping with guardrail_name and litellm_params")
    name = entry.get("guardrail_name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise ConfigError(f"{where}.guardrail_name: required, letters, digits, _ . - (got {name!r})")
    where = f"{where} ({name})"
    f = Fields(entry, where).mapping("litellm_params")
    engine = f.values.get("guardrail")
    if engine not in ENGINES:
        raise ConfigError(f"{f.where}.guardrail: must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "presidio":
        _require_presidio(f)
    kind = ENGINES[engine]
    modes = _modes(f)
    if kind == "injection" and "post_call" in modes:
        raise f.fail(
            "mode",
            "pre_call, during_call or logging_only for prompt_injection (it screens requests)",
            sorted(modes),
        )
    base = dict(
        name=name,
        engine=engine,
        kind=kind,
        modes=modes,
        default_on=f.flag("default_on", False),
        fail_open=f.flag("fail_open", False),
    )
    if kind == "pii":
        return GuardrailSpec(**base, **_pii(f))
    if kind == "content":
        return GuardrailSpec(**base, **_content(f))
    return GuardrailSpec(
        **base,
        threshold=f.number("threshold", 1.0, positive=True),
        screen_tool_results=f.flag("screen_tool_results", True),
        llm_check_model=f.text("llm_check_model"),
    )


def _modes(f: Fields) -> frozenset[str]:
    value = f.values.get("mode", "pre_call")
    modes = value if isinstance(value, list) else [value]
    if not modes or not all(m in MODES for m in modes):
        raise f.fail("mode", "one of " + ", ".join(MODES) + " or a list of them", value)
    if "logging_only" in modes and len(modes) > 1:
        raise f.fail("mode", "logging_only alone (it changes nothing the upstream or client sees)", value)
    return frozenset(modes)


def _require_presidio(f: Fields) -> None:
    try:
        importlib.import_module("presidio_analyzer")
    except ImportError as e:
        raise ConfigError(
            f"{f.where}.guardrail: presidio is not installed ({e}); run pip install 'parley[presidio]' "
            "or use parley_pii (built in, nothing to download)"
        ) from None


def _pii(f: Fields) -> dict[str, Any]:
    presidio = f.values.get("guardrail") == "presidio"
    known = PRESIDIO_ENTITIES if presidio else PII_ENTITIES
    default = str(f.values.get("default_action") or "MASK").upper()
    if default not in PII_ACTIONS:
        raise f.fail("default_action", "one of " + ", ".join(PII_ACTIONS), default)
    raw = f.values.get("pii_entities_config")
    if raw is None:
        entities = dict.fromkeys(sorted(PRESIDIO_DEFAULT if presidio else known), default)
    elif isinstance(raw, dict):
        entities = {}
        for entity, action in raw.items():
            action = str(action).upper()
            if action not in PII_ACTIONS:
                raise f.fail(f"pii_entities_config.{entity}", "one of " + ", ".join(PII_ACTIONS), action)
            if entity not in known:
                raise f.fail(
                    "pii_entities_config",
                    f"entities {f.values.get('guardrail')} knows: " + ", ".join(sorted(known)),
                    entity,
                )
            entities[entity] = action
    else:
        raise f.fail("pii_entities_config", "a mapping of entity to MASK, REDACT or BLOCK", raw)
    patterns = _patterns(f, PII_ACTIONS, upper=True)
    for p in patterns:
        entities.setdefault(p.name, p.action)
    regions = f.values.get("phone_regions", ["US"])
    if not isinstance(regions, list) or not all(isinstance(r, str) and len(r) == 2 for r in regions):
        raise f.fail("phone_regions", "a list of two-letter region codes (US, GB, DE ...)", regions)
    return {
        "entities": entities,
        "output_parse_pii": f.flag("output_parse_pii", False),
        "patterns": patterns,
        "phone_regions": tuple(r.upper() for r in regions) or ("US",),
    }


def _patterns(f: Fields, actions: tuple[str, ...], upper: bool) -> tuple[Pattern, ...]:
    raw = f.values.get("patterns") or []
    if not isinstance(raw, list):
        raise f.fail("patterns", "a list of {name, pattern, action}", raw)
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("pattern"), str):
            raise f.fail(f"patterns[{i}]", "a mapping with name, pattern (a regex) and action", item)
        name = str(item.get("name") or item.get("pattern_name") or f"pattern_{i + 1}")
        if upper and not re.fullmatch(r"[A-Z][A-Z0-9_]{0,39}", name):
            raise f.fail(f"patterns[{i}].name", "an entity name in capitals (e.g. EMPLOYEE_ID)", name)
        action = str(item.get("action") or actions[0])
        action = action.upper() if upper else action.lower()
        if action not in actions:
            raise f.fail(f"patterns[{i}].action", "one of " + ", ".join(actions), action)
        try:
            regex = re.compile(item["pattern"])
        except re.error as e:
            raise f.fail(f"patterns[{i}].pattern", f"a valid regex ({e})", item["pattern"]) from None
        out.append(Pattern(name, regex, action))
    return tuple(out)


def _content(f: Fields) -> dict[str, Any]:
    keywords: list[Keyword] = []
    words = f.values.get("blocked_words") or []
    if not isinstance(words, list):
        raise f.fail("blocked_words", "a list of words or {keyword, action}", words)
    for i, item in enumerate(words):
        word, action = (item, "block") if isinstance(item, str) else _keyword_item(f, i, item)
        if not word.strip():
            raise f.fail(f"blocked_words[{i}]", "a non-empty word", item)
        keywords.append(Keyword(word, action, f"blocked_words[{i}]"))
    categories = f.values.get("categories") or []
    if not isinstance(categories, list):
        raise f.fail("categories", "a list of {category, keywords, action}", categories)
    for i, cat in enumerate(categories):
        name = cat.get("category") if isinstance(cat, dict) else None
        words = cat.get("keywords") if isinstance(cat, dict) else None
        if (
            not isinstance(name, str)
            or not isinstance(words, list)
            or not all(isinstance(w, str) for w in words)
        ):
            raise f.fail(f"categories[{i}]", "a mapping with category (a name) and keywords (a list)", cat)
        action = str(cat.get("action") or "block").lower()
        if action not in CONTENT_ACTIONS:
            raise f.fail(f"categories[{i}].action", "block or mask", action)
        keywords.extend(Keyword(w, action, f"category:{name}") for w in words if w.strip())
    patterns = _patterns(f, CONTENT_ACTIONS, upper=False)
    if not keywords and not patterns:
        raise ConfigError(f"{f.where}: a content filter needs blocked_words, patterns or categories")
    return {"keywords": tuple(keywords), "patterns": patterns}


def _keyword_item(f: Fields, i: int, item: Any) -> tuple[str, str]:
    if not isinstance(item, dict) or not isinstance(item.get("keyword"), str):
        raise f.fail(f"blocked_words[{i}]", "a word or a mapping with keyword and action", item)
    action = str(item.get("action") or "block").lower()
    if action not in CONTENT_ACTIONS:
        raise f.fail(f"blocked_words[{i}].action", "block or mask", action)
    return item["keyword"], action


def ignored_guardrail_keys(value: object) -> Iterator[tuple[str, str]]:
    """`(path, reason)` for each key of the `guardrails:` list that parley does not act on."""
    for i, entry in enumerate(value if isinstance(value, list) else []):
        if not isinstance(entry, dict):
            continue
        for key in entry:
            if key not in ENTRY_KEYS:
                yield f"guardrails[{i}].{key}", "unknown key"
        params = entry.get("litellm_params")
        if not isinstance(params, dict):
            continue
        kind = ENGINES.get(str(params.get("guardrail")), "")
        for key in params:
            if key in COMMON_KEYS or key in ENGINE_KEYS.get(kind, ()):
                continue
            reason = "LiteLLM setting parley does not support" if key in LITELLM_KEYS else "unknown key"
            yield f"guardrails[{i}].litellm_params.{key}", reason
