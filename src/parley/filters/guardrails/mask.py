"""Placeholders for masked values, kept per request, and the PII guardrail's actions on text.

`<EMAIL_1>`: one label per entity, numbered by first appearance in the request. The body is
walked in a fixed order (system, then messages in order), so a conversation that grows turn by
turn gives each value the same placeholder in every turn (and the prompt cache keeps hitting).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import orjson

from parley.core.errors import GatewayError
from parley.filters.guardrails.pii import Analyzer

PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*_\d{1,6})>")
REDACTED = "[REDACTED]"
LABELS = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CARD",
    "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP",
    "US_SSN": "SSN",
}


@dataclass(slots=True)
class Vault:
    """value <-> placeholder for one request."""

    by_value: dict[tuple[str, str], str] = field(default_factory=dict)
    originals: dict[str, str] = field(default_factory=dict)  # "<EMAIL_1>" -> value
    counts: Counter[str] = field(default_factory=Counter)
    longest: int = 0

    def placeholder(self, entity: str, value: str) -> str:
        key = (entity, value)
        found = self.by_value.get(key)
        if found is not None:
            return found
        label = LABELS.get(entity, entity)
        self.counts[label] += 1
        token = f"<{label}_{self.counts[label]}>"
        self.by_value[key] = token
        self.originals[token] = value
        self.longest = max(self.longest, len(token))
        return token

    def restore(self, text: str, json_string: bool = False) -> str:
        """`text` with every known placeholder replaced by its value (JSON-escaped inside a JSON
        string); unknown placeholder-like text stays as it is."""
        if "<" not in text or not self.originals:
            return text
        originals = self.originals

        def swap(m: re.Match[str]) -> str:
            value = originals.get(m.group())
            if value is None:
                return m.group()
            return orjson.dumps(value).decode()[1:-1] if json_string else value

        return PLACEHOLDER.sub(swap, text)


class PiiBlocked(GatewayError):
    def __init__(self, guardrail: str, entity: str) -> None:
        super().__init__(
            400,
            f"guardrail {guardrail!r} blocked the request: it contains {entity}",
            "invalid_request_error",
            code="guardrail_blocked",
        )


@dataclass(slots=True)
class PiiMasker:
    """One PII guardrail: its analyzer and the action for each entity."""

    name: str
    analyzer: Analyzer
    actions: dict[str, str]

    def apply(self, text: str, vault: Vault, tally: Counter[str], *, change: bool = True) -> str:
        """`text` with each finding masked, redacted or refused; `tally` counts action:entity."""
        findings = self.analyzer.analyze(text)
        if not findings:
            return text
        out: list[str] = []
        last = 0
        for f in findings:
            action = self.actions.get(f.entity, "MASK")
            tally[f"{action.lower()}:{f.entity}"] += 1
            if not change:
                continue
            if action == "BLOCK":
                raise PiiBlocked(self.name, f.entity)
            out.append(text[last : f.start])
            out.append(vault.placeholder(f.entity, text[f.start : f.end]) if action == "MASK" else REDACTED)
            last = f.end
        if not change:
            return text
        out.append(text[last:])
        return "".join(out)
