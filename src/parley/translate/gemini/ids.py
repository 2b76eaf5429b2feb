"""Tool-use ids that carry Gemini's thought signature, so a client's echo brings it back.

Gemini signs its reasoning and attaches the signature to the function-call part; the next request
must send that part back with the signature or Gemini refuses it (400). Anthropic and OpenAI
clients echo a tool call's id verbatim (thinking blocks are dropped by many Chat Completions
clients), so the signature rides in the id: `toolu_<random>_ts_<signature, URL-safe base64>`.
Standard base64 has no `-` or `_`, so the mapping is exact both ways. Thought parts' signatures go
on their thinking blocks, prefixed `gemini.` so that a conversation that moves between models
never sends Gemini another model's signature (nor Anthropic Gemini's).
"""

from __future__ import annotations

import secrets
from typing import Any

_MARK = "_ts_"
THINKING_PREFIX = "gemini."  # on thinking blocks' signatures: a Claude (or other) one is never sent


def thinking_signature(signature: str | None) -> str:
    return THINKING_PREFIX + signature if signature else ""


def gemini_signature(thinking_signature: Any) -> str | None:
    """The Gemini signature a thinking block carries, or None (absent, or another model's)."""
    if isinstance(thinking_signature, str) and thinking_signature.startswith(THINKING_PREFIX):
        return thinking_signature[len(THINKING_PREFIX) :] or None
    return None


def tool_use_id(signature: str | None) -> str:
    base = "toolu_" + secrets.token_hex(12)
    if not signature:
        return base
    return base + _MARK + signature.replace("+", "-").replace("/", "_").rstrip("=")


def signature_of(tool_use_id: str) -> str | None:
    """The thought signature a tool-use id carries, or None."""
    _, mark, tail = tool_use_id.partition(_MARK)
    if not mark or not tail:
        return None
    sig = tail.replace("-", "+").replace("_", "/")
    return sig + "=" * (-len(sig) % 4)
