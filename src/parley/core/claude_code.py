"""Claude Code's per-request attribution line at the head of the system prompt.

Claude Code puts `x-anthropic-billing-header: cc_version=2.1.37.a1b; cc_entrypoint=cli; cch=9f3c2;`
first in `system` (its own text block). `cch` changes on every request, so a backend that caches
prompt prefixes misses on every turn if the line reaches it: the translated paths remove it, the
native path forwards it (Anthropic reads it). Its version and entrypoint go to the spend row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PREFIX = "x-anthropic-billing-header:"


@dataclass(frozen=True, slots=True)
class BillingLine:
    version: str | None
    entrypoint: str | None


def parse_line(text: str) -> BillingLine | None:
    """The fields of an attribution line, or None when `text` is not one."""
    if not text.startswith(PREFIX):
        return None
    fields: dict[str, str] = {}
    for part in text[len(PREFIX) :].split("\n", 1)[0].split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name.strip()] = value.strip()
    return BillingLine(fields.get("cc_version") or None, fields.get("cc_entrypoint") or None)


def find_line(system: Any) -> BillingLine | None:
    """The attribution line of a Messages `system` (a string or text blocks), if it has one."""
    if isinstance(system, str):
        return parse_line(system)
    if isinstance(system, list):
        for block in system:
            if isinstance(block, dict) and isinstance(text := block.get("text"), str):
                line = parse_line(text)
                if line is not None:
                    return line
    return None


def without_line(text: str) -> str:
    """`text` with a leading attribution line removed (all of it when it is only that line)."""
    if not text.startswith(PREFIX):
        return text
    _, _, rest = text.partition("\n")
    return rest.lstrip("\n")
