"""Built-in PII and secret recognizers: nothing to download, validated where a check exists.

Each recognizer yields `Finding(start, end, entity)`. Regexes find candidates; checks keep the
real ones: phone numbers through Google's libphonenumber port (`phonenumbers`, valid numbers
only), payment cards by the Luhn sum, IBANs by their ISO 7064 mod-97 check, IP addresses through
`ipaddress`. Overlapping findings are resolved longest-first, so a card number is not also a phone.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import re
from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol

import phonenumbers

from parley.config.guardrails import Pattern


class Finding(NamedTuple):  # a tuple: built several times faster than a frozen dataclass
    start: int
    end: int
    entity: str


# Candidates are found by cheap scans (a literal, or one character class), then checked closely.
# Cards, SSNs, phones and IPv4 live in runs of digits and separators; searched in the shape (below),
# where every digit is "0": a literal first character is scanned for in C, not tested as a class.
_NUMBERISH = re.compile(r"0[0 ().+/-]{5,200}0")
_EMAIL = re.compile(
    r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)
_SSN = re.compile(
    r"(?<![0-9-])(?!000|666|9[0-9][0-9])[0-9]{3}([- ])(?!00)[0-9]{2}\1(?!0000)[0-9]{4}(?![0-9-])"
)
_CARD = re.compile(r"(?<![0-9-])[0-9](?:[ -]?[0-9]){12,18}(?![0-9-])")
_IBAN_START = re.compile(r"[A-Z]{2}[0-9]{2}")
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_IPV4 = re.compile(
    r"(?<![0-9.])(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?![0-9]|\.[0-9])"
)
_IPV6 = re.compile(r"(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}")
_SHAPE = str.maketrans(dict.fromkeys("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "A") | dict.fromkeys("0123456789", "0"))
_HEX_COLON = frozenset("0123456789abcdefABCDEF:")
PHONE_CACHE = 4096  # candidate strings whose verdict is kept
PHONE_PARSES = 48  # libphonenumber parses per run of digit groups (a long number table costs no more)
_DIGITS = re.compile(r"[0-9]+")
_GROUP = re.compile(r"\+?\(?[0-9]+\)?")
_DATE = re.compile(r"[0-9]{4}[-/.][0-9]{1,2}[-/.][0-9]{1,2}|[0-9]{1,2}[-/.][0-9]{1,2}[-/.][0-9]{4}")
_WORD_BEFORE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
# (entity, literals that start it, the regex matched at each literal)
_SECRETS: tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...] = (
    (
        "PRIVATE_KEY",
        ("-----BEGIN ",),
        re.compile(
            r"-----BEGIN [A-Z ]{0,20}PRIVATE KEY-----[\s\S]{1,16384}?-----END [A-Z ]{0,20}PRIVATE KEY-----"
        ),
    ),
    ("ANTHROPIC_API_KEY", ("sk-ant-",), re.compile(r"sk-ant-[A-Za-z0-9_-]{20,}")),
    ("OPENAI_API_KEY", ("sk-",), re.compile(r"sk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}")),
    (
        "AWS_ACCESS_KEY",
        ("AKIA", "ASIA", "ABIA", "ACCA"),
        re.compile(r"A(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
    ),
    (
        "GITHUB_TOKEN",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        re.compile(r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?![A-Za-z0-9_])"),
    ),
    ("SLACK_TOKEN", ("xox",), re.compile(r"xox[abposr]-[A-Za-z0-9-]{10,250}")),
    ("GOOGLE_API_KEY", ("AIza",), re.compile(r"AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])")),
    ("JWT", ("eyJ",), re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
)
# One scan per shared prefix (a regex with a literal prefix is searched in C): the rules it starts.
_SECRET_ANCHORS: tuple[tuple[re.Pattern[str], frozenset[str]], ...] = (
    (re.compile(r"-----BEGIN "), frozenset({"PRIVATE_KEY"})),
    (re.compile(r"sk-"), frozenset({"ANTHROPIC_API_KEY", "OPENAI_API_KEY"})),
    (re.compile(r"A(?:KIA|SIA|BIA|CCA|Iza)"), frozenset({"AWS_ACCESS_KEY", "GOOGLE_API_KEY"})),
    (re.compile(r"g(?:h[pousr]_|ithub_pat_)"), frozenset({"GITHUB_TOKEN"})),
    (re.compile(r"xox"), frozenset({"SLACK_TOKEN"})),
    (re.compile(r"eyJ"), frozenset({"JWT"})),
)
_V6_HINT = re.compile(r":(?::|(?:[0-9A-Fa-f]{0,4}:){6})")  # "::", or 7 colons in groups of <= 4
_HEX_RUN = re.compile(r"[0-9A-Fa-f:]*")
NUMBER_CACHE = 4096  # candidate digit runs whose findings are kept
_AWS_SECRET = re.compile(r"(?i)aws_secret_access_key[\s\"']*[:=][\s\"']*([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])")


class Analyzer(Protocol):
    """A PII engine: finds spans (parley_pii's `PiiAnalyzer`, or Presidio's)."""

    def analyze(self, text: str) -> list[Finding]: ...


def merge_findings(found: list[Finding]) -> list[Finding]:
    """Sorted, non-overlapping: overlapping findings merge into one covering both (named after
    the longer), so no part of either is left unmasked."""
    if len(found) < 2:
        return found
    found.sort(key=lambda f: (f.start, f.start - f.end))
    kept: list[Finding] = []
    for f in found:
        last = kept[-1] if kept else None
        if last is not None and f.start < last.end:
            entity = f.entity if f.end - f.start > last.end - last.start else last.entity
            kept[-1] = Finding(last.start, max(last.end, f.end), entity)
            continue
        kept.append(f)
    return kept


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    iban = text.replace(" ", "")
    if not 15 <= len(iban) <= 34:
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


class PiiAnalyzer:
    """Finds the entities one guardrail asks for, plus its custom patterns."""

    def __init__(self, entities: frozenset[str], patterns: tuple[Pattern, ...], regions: tuple[str, ...]):
        self.entities = entities
        self.patterns = patterns
        self.regions = regions
        self.phone_cache: dict[str, bool] = {}
        self.number_cache: dict[tuple[str, str], tuple[tuple[int, int, str], ...]] = {}
        secrets = [rule for rule in _SECRETS if rule[0] in entities]
        self.anchors = tuple(
            (
                anchor,
                tuple(
                    (entity, literal, rx)
                    for entity, literals, rx in secrets
                    for literal in literals
                    if entity in owners
                ),
            )
            for anchor, owners in _SECRET_ANCHORS
            if any(rule[0] in owners for rule in secrets)
        )
        self.numeric = entities & {"CREDIT_CARD", "US_SSN", "PHONE_NUMBER", "IP_ADDRESS"}
        steps: list[Callable[[str, str], Iterator[Finding]]] = []
        if self.anchors:
            steps.append(self._secrets)
        if "AWS_SECRET_KEY" in entities:
            steps.append(_aws_secrets)
        if "EMAIL_ADDRESS" in entities:
            steps.append(_emails)
        if "IBAN_CODE" in entities:
            steps.append(_ibans)
        if "IP_ADDRESS" in entities:
            steps.append(_ipv6)
        self.steps = steps

    def analyze(self, text: str) -> list[Finding]:
        """Non-overlapping findings in `text`, in order. Overlapping ones merge into one finding that
        covers both (named after the longer), so no part of either is left unmasked."""
        shape = text.translate(_SHAPE) if self.numeric or "IBAN_CODE" in self.entities else ""
        found = [f for step in self.steps for f in step(text, shape)]
        if self.numeric:
            found.extend(self._numbers(text, shape, found))
        if self.patterns:
            found.extend(self._custom(text))
        return merge_findings(found)

    def _secrets(self, text: str, shape: str) -> Iterator[Finding]:
        """Each literal's hits not preceded by a word character, matched by its rule's regex; a
        literal looks again after its own last match (as a scan per literal would)."""
        for anchor, rules in self.anchors:
            after = [0] * len(rules)
            hit = anchor.search(text)
            while hit is not None:
                pos = hit.start()
                if pos == 0 or text[pos - 1] not in _WORD_BEFORE:
                    for i, (entity, literal, rx) in enumerate(rules):
                        if pos >= after[i] and text.startswith(literal, pos):
                            m = rx.match(text, pos)
                            if m is not None:
                                after[i] = m.end()
                                yield Finding(m.start(), m.end(), entity)
                hit = anchor.search(text, pos + 1)

    def _numbers(self, text: str, shape: str, before: list[Finding]) -> Iterator[Finding]:
        """Cards, SSNs, IPv4 and phones in runs of digits and separators. A run that lies inside a
        finding of an earlier step (an IBAN's digits), with the "+" or "(" a phone may start at, is
        skipped: the merge would absorb whatever it held. A run's findings depend only on it and
        the two characters before it, so they are remembered (logs repeat dates and addresses)."""
        covered = _Cover(before)
        cache = self.number_cache
        for cand in _NUMBERISH.finditer(shape):
            start, end = cand.span()
            if covered.holds(start - 1 if start > 0 and text[start - 1] in "+(" else start, end):
                continue
            key = (text[max(0, start - 2) : start], text[start:end])
            known = cache.get(key)
            if known is None:
                if len(cache) >= NUMBER_CACHE:
                    cache.clear()
                known = cache[key] = tuple(
                    (f.start - start, f.end - start, f.entity) for f in self._number_run(text, start, end)
                )
            for rel_start, rel_end, entity in known:
                yield Finding(start + rel_start, start + rel_end, entity)

    def _number_run(self, text: str, start: int, end: int) -> Iterator[Finding]:
        want = self.numeric
        size = end - start
        found: list[Finding] = []
        if size >= 13 and "CREDIT_CARD" in want:
            for m in _CARD.finditer(text, start, end):
                found.extend(_cards(text, m.start(), m.end()))
        if size >= 11 and "US_SSN" in want:
            found.extend(Finding(m.start(), m.end(), "US_SSN") for m in _SSN.finditer(text, start, end))
        if text.count(".", start, end) >= 3 and "IP_ADDRESS" in want:
            found.extend(Finding(m.start(), m.end(), "IP_ADDRESS") for m in _IPV4.finditer(text, start, end))
        yield from found
        if "PHONE_NUMBER" in want and not any(f.end - f.start >= size - 2 for f in found):
            yield from self._phones(text, start, end)

    def _phones(self, text: str, start: int, end: int) -> Iterator[Finding]:
        """Valid numbers among the digit groups of one candidate: from each group, the longest run
        of up to 6 groups that libphonenumber accepts as a valid number of a configured region."""
        if start > 0 and text[start - 1] in "+(":
            start -= 1
        glued = start > 0 and text[start - 1].isalnum()  # "v1234567", "DE89": its first group is no phone
        cand = text[start:end]
        if len(cand) < 7 or _DATE.fullmatch(cand) or _IPV4.fullmatch(cand):
            return
        groups = [(m.start(), m.end()) for m in _GROUP.finditer(text, start, end)]
        k = 1 if glued else 0
        budget = PHONE_PARSES
        while k < len(groups) and budget > 0:
            for j in range(min(len(groups), k + 6), k, -1):
                value = text[groups[k][0] : groups[j - 1][1]]
                if not 7 <= sum(c.isdigit() for c in value) <= 15:
                    continue
                budget -= 1
                if self._valid_phone(value):
                    yield Finding(groups[k][0], groups[j - 1][1], "PHONE_NUMBER")
                    k = j
                    break
            else:
                k += 1

    def _valid_phone(self, value: str) -> bool:
        """libphonenumber's verdict, remembered: conversations resend the same numbers every turn."""
        known = self.phone_cache.get(value)
        if known is None:
            if len(self.phone_cache) >= PHONE_CACHE:
                self.phone_cache.clear()
            known = self.phone_cache[value] = self._parse_phone(value)
        return known

    def _parse_phone(self, value: str) -> bool:
        for region in self.regions:
            try:
                if phonenumbers.is_valid_number(phonenumbers.parse(value, region)):
                    return True
            except phonenumbers.NumberParseException:
                continue
        return False

    def _custom(self, text: str) -> Iterator[Finding]:
        for p in self.patterns:
            for m in p.regex.finditer(text):
                if m.end() > m.start():
                    yield Finding(m.start(), m.end(), p.name)


def _cards(text: str, start: int, end: int) -> Iterator[Finding]:
    """Card numbers in a run of digit groups: the longest runs of whole groups that pass Luhn."""
    if _card_ok(text[start:end]):
        yield Finding(start, end, "CREDIT_CARD")
        return
    groups = [(m.start(), m.end()) for m in _DIGITS.finditer(text, start, end)]
    k = 0
    while k < len(groups):
        for j in range(len(groups), k, -1):
            if _card_ok(text[groups[k][0] : groups[j - 1][1]]):
                yield Finding(groups[k][0], groups[j - 1][1], "CREDIT_CARD")
                k = j
                break
        else:
            k += 1


def _card_ok(value: str) -> bool:
    digits = value.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and digits[0] in "2345689" and luhn_ok(digits)


def _aws_secrets(text: str, shape: str) -> Iterator[Finding]:
    lower = text.lower() if "ws_secret" in text or "WS_SECRET" in text else ""
    pos = lower.find("aws_secret_access_key")
    while pos >= 0:
        m = _AWS_SECRET.match(text, pos)
        if m is not None:
            yield Finding(m.start(1), m.end(1), "AWS_SECRET_KEY")
        pos = lower.find("aws_secret_access_key", pos + 1)


def _emails(text: str, shape: str) -> Iterator[Finding]:
    at = text.find("@")
    last_end = 0
    while at >= 0:
        m = _EMAIL.search(text, max(last_end, at - 64), at + 256)
        while m is not None and m.end() <= at:
            m = _EMAIL.search(text, m.end(), at + 256)
        if m is not None and m.start() <= at < m.end():
            start = m.start()
            if start == 0 or (text[start - 1] not in "._%+-" and not text[start - 1].isalnum()):
                yield Finding(start, m.end(), "EMAIL_ADDRESS")
            last_end = m.end()
            at = text.find("@", m.end())
        else:
            at = text.find("@", at + 1)


def _ibans(text: str, shape: str) -> Iterator[Finding]:
    """`shape`: the text with capitals as A and digits as 0, where an IBAN starts with "AA00"."""
    pos = shape.find("AA00")
    while pos >= 0:
        m = None if pos > 0 and text[pos - 1].isalnum() else _IBAN.match(text, pos)
        end = _iban_end(text, pos, m.end()) if m is not None else None
        if end is not None:
            yield Finding(pos, end, "IBAN_CODE")
        pos = shape.find("AA00", end or pos + 1)


def _iban_end(text: str, start: int, end: int) -> int | None:
    """The end of the valid IBAN at `start`: the whole match, or it less trailing groups."""
    while end - start >= 15:
        if iban_ok(text[start:end]):
            return end
        cut = text.rfind(" ", start, end)
        if cut <= start:
            return None
        end = cut
    return None


def _ipv6(text: str, shape: str) -> Iterator[Finding]:
    """Runs of hex digits and colons holding "::" or exactly 7 colons, valid as IPv6 addresses."""
    last = 0
    for hint in _V6_HINT.finditer(text):  # a valid run has a hint: no need to look at other runs
        start = hint.start()
        if start < last:
            continue
        while start > 0 and text[start - 1] in _HEX_COLON:
            start -= 1
        m = _HEX_RUN.match(text, hint.start())
        end = last = m.end() if m is not None else hint.end()
        value = text[start:end]
        colons = value.count(":")
        if (colons == 7 or "::" in value) and any(c.isdigit() for c in value) and _IPV6.fullmatch(value):
            try:
                ipaddress.IPv6Address(value)
                yield Finding(start, end, "IP_ADDRESS")
            except ValueError:
                pass


class _Cover:
    """Whether a span lies inside one of some findings (sorted starts, running maximum of ends)."""

    __slots__ = ("ends", "starts")

    def __init__(self, found: list[Finding]) -> None:
        spans = sorted((f.start, f.end) for f in found)
        self.starts = [s for s, _ in spans]
        self.ends = list(itertools.accumulate((e for _, e in spans), max))

    def holds(self, start: int, end: int) -> bool:
        i = bisect.bisect_right(self.starts, start)
        return i > 0 and self.ends[i - 1] >= end
