"""`mode: post_call` on a PII guardrail: PII the model itself writes is masked in the reply.

The masks are `<EMAIL_ADDRESS>` (the entity name, as Presidio's anonymizer writes it), never a
numbered placeholder: `PiiRestore` runs after this (phase RESTORE) and puts back only numbered
placeholders issued for the request, so the model's own values stay masked, and the request's
values restored from `<EMAIL_1>` are put back after this check and never masked again (LiteLLM
#28316). `BLOCK` ends the reply like a content-filter block.

On streams the gate holds back the trailing token of each channel (after the last whitespace or
quote; and the digit groups before it,
so a card or phone number split across deltas is seen whole), at most `MAX_HOLD` characters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from parley.core.errors import GatewayError
from parley.filters.guardrails.content import ContentBlocked
from parley.filters.guardrails.mask import REDACTED, PiiMasker
from parley.filters.guardrails.stream import Channel, Gate

MAX_HOLD = 96  # characters a stream may hold per channel while a value could still be growing


class PiiOutputBlocked(ContentBlocked):
    def __init__(self, guardrail: str, entity: str) -> None:
        GatewayError.__init__(
            self,
            400,
            f"guardrail {guardrail!r} blocked the reply: it contains {entity}",
            "invalid_request_error",
            code="guardrail_blocked",
        )
        self.rule = entity
        self.guardrail = guardrail


def mask_output(masker: PiiMasker, text: str, tally: Counter[str]) -> str:
    """`text` with the PII found in it replaced by `<ENTITY>` or `[REDACTED]`, or refused."""
    findings = masker.analyzer.analyze(text)
    if not findings:
        return text
    out: list[str] = []
    last = 0
    for f in findings:
        action = masker.actions.get(f.entity, "MASK")
        tally[f"{action.lower()}:{f.entity}"] += 1
        if action == "BLOCK":
            raise PiiOutputBlocked(masker.name, f.entity)
        out.append(text[last : f.start])
        out.append(f"<{f.entity}>" if action == "MASK" else REDACTED)
        last = f.end
    out.append(text[last:])
    return "".join(out)


def pending_token(pending: str) -> int:
    """How many trailing characters could still be part of a value: the last token (after the last
    whitespace or quote), and the digit
    groups before it when it may continue them ("4111 1111 ", "+1 (212) 555-")."""
    end = len(pending)
    start = end
    while start > 0 and not _boundary(pending[start - 1]):
        start -= 1
    while (
        start > 1
        and pending[start - 1] == " "
        and (pending[start - 2].isdigit() or pending[start - 2] == ")")
        and (start == end or pending[start] in "0123456789+(")
    ):
        start -= 1
        while start > 0 and not _boundary(pending[start - 1]):
            start -= 1
    return min(end - start, MAX_HOLD)


def _boundary(ch: str) -> bool:
    """Whitespace, or a quote (a JSON string's edge in tool input, where there is no whitespace)."""
    return ch.isspace() or ch == '"'


class OutputPiiGate:
    """The stream gate for post_call PII guardrails."""

    __slots__ = ("maskers", "tally")

    def __init__(self, maskers: list[PiiMasker], tally: Callable[[str], Counter[str]]) -> None:
        self.maskers = maskers
        self.tally = tally

    def hold(self, pending: str) -> int:
        return pending_token(pending)

    def release(self, text: str, json_string: bool, channel: Channel) -> str:
        for masker in self.maskers:
            text = mask_output(masker, text, self.tally(masker.name))
        return text


class Gates:
    """Several gates as one: the longest hold, releases applied in order."""

    __slots__ = ("gates",)

    def __init__(self, gates: list[Gate]) -> None:
        self.gates = gates

    def hold(self, pending: str) -> int:
        return max(g.hold(pending) for g in self.gates)

    def release(self, text: str, json_string: bool, channel: Channel) -> str:
        for g in self.gates:
            text = g.release(text, json_string, channel)
        return text
