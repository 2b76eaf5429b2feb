"""Content policy: blocked words (case-insensitive, whole words) and regexes, each to block or mask.

A refusal names the rule (`blocked_words[2]`, `category:weapons`, a pattern's name), never the
matched text. On streams `hold(pending)` says how many trailing characters could still grow into a
blocked word, so a word split across deltas is caught before any of it is sent.
"""

from __future__ import annotations

import re
from collections import Counter

from parley.config.guardrails import GuardrailSpec, Keyword
from parley.core.errors import GatewayError

MASK = "[MASKED]"
CONTEXT = 256  # characters of already-sent text a pattern may reach back into on streams


class ContentBlocked(GatewayError):
    def __init__(self, guardrail: str, rule: str, where: str) -> None:
        super().__init__(
            400,
            f"guardrail {guardrail!r} blocked the {where}: it matches rule {rule}",
            "invalid_request_error",
            code="guardrail_blocked",
        )
        self.rule = rule
        self.guardrail = guardrail


class ContentPolicy:
    def __init__(self, spec: GuardrailSpec) -> None:
        self.name = spec.name
        self.keywords: dict[str, Keyword] = {k.word.lower(): k for k in spec.keywords}
        self.patterns = spec.patterns
        self.words = (
            re.compile(
                "|".join(_word_regex(w) for w in sorted(self.keywords, key=len, reverse=True)),
                re.IGNORECASE,
            )
            if self.keywords
            else None
        )
        self.prefixes = {w[:n] for w in self.keywords for n in range(1, len(w) + 1)}
        self.longest = max((len(w) for w in self.keywords), default=0)

    def check(self, text: str, tally: Counter[str], where: str, context: str = "") -> str:
        """`text` with masked matches; raises ContentBlocked for a blocking one. `context` is text
        already sent before `text` (streams): a pattern match reaching into it still counts."""
        if self.words is not None:
            text = self.words.sub(lambda m: self._word(m, tally, where), text)
        for p in self.patterns:
            joined = context + text
            for m in p.regex.finditer(joined):
                if m.end() <= len(context) or m.end() == m.start():
                    continue
                tally[f"{p.action}:{p.name}"] += 1
                if p.action == "block":
                    raise ContentBlocked(self.name, p.name, where)
            if p.action == "mask":
                text = p.regex.sub(MASK, text)
        return text

    def _word(self, m: re.Match[str], tally: Counter[str], where: str) -> str:
        keyword = self.keywords[m.group().lower()]
        tally[f"{keyword.action}:{keyword.rule}"] += 1
        if keyword.action == "block":
            raise ContentBlocked(self.name, keyword.rule, where)
        return MASK

    def hold(self, pending: str) -> int:
        """Length of the longest end of `pending` that is, or begins, a blocked word (held back
        until the next character says whether the word is complete)."""
        for n in range(min(self.longest, len(pending)), 0, -1):
            if pending[-n:].lower() in self.prefixes:
                return n
        return 0


def _word_regex(word: str) -> str:
    head = r"(?<!\w)" if word[:1].isalnum() or word[:1] == "_" else ""
    tail = r"(?!\w)" if word[-1:].isalnum() or word[-1:] == "_" else ""
    return head + re.escape(word) + tail
