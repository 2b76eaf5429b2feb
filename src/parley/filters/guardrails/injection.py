"""A heuristic prompt-injection detector: known attack phrasings, role confusion, hidden payloads.

Each rule has a weight; a text's score is the sum of the weights of the rules it matches (each rule
once), plus what base64 runs and Unicode tag characters decode to. A score at or above the
guardrail's threshold (default 1.0) blocks. Ordinary words never score alone: every rule needs a
phrase ("ignore ... previous instructions"), not a word ("ignore", "submit").

Limits, stated plainly: English phrasings only; paraphrases that avoid the known shapes pass; it
judges text, not intent. Precision and recall on the labelled sample are in docs/guardrails.md.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

_I = re.IGNORECASE
RULES: tuple[tuple[str, float, re.Pattern[str]], ...] = (
    (
        "override",
        1.0,
        re.compile(
            r"\b(?:ignore|disregard|forget|override|bypass|neglect|abandon|stop following|stop obeying)\b"
            r"[^.\n]{0,40}?"
            r"\b(?:previous|prior|above|earlier|preceding|all|any|your|the|system|original|initial|"
            r"former|existing)\b[^.\n]{0,30}?\b(?:instructions?|prompts?|rules|directives?|directions|guidelines|"
            r"guardrails|constraints|programming|policies)\b",
            _I,
        ),
    ),
    (
        "new_instructions",
        0.6,
        re.compile(
            r"\b(?:new|updated|real|actual|revised|true)\s+(?:system\s+)?(?:instructions?|directives?|orders)\s*[:\-]",
            _I,
        ),
    ),
    (
        "reveal_prompt",
        0.8,
        re.compile(
            r"\b(?:reveal|show|print|repeat|output|display|leak|dump|tell me|what(?:'s| is| are))\b"
            r"[^.\n]{0,30}?"
            r"\b(?:system prompt|hidden (?:instructions|prompt)|initial (?:instructions|prompt)|"
            r"your (?:instructions|system prompt|original prompt|rules))",
            _I,
        ),
    ),
    (
        "forget_what_you_were_told",
        1.0,
        re.compile(
            r"\b(?:forget|disregard|ignore|set aside|drop)\b[^.\n]{0,20}?\b(?:everything|whatever|all)\b"
            r"[^.\n]{0,20}?\b(?:you were|you've been|you have been)\s+(?:told|given|instructed)",
            _I,
        ),
    ),
    (
        "mentions_system_prompt",
        0.3,
        re.compile(r"\b(?:system prompt|hidden instructions|initial (?:instructions|prompt))\b", _I),
    ),
    (
        "repeat_above",
        0.8,
        re.compile(r"\brepeat (?:the|all|everything)(?: text| words)? (?:above|before)\b", _I),
    ),
    ("your_new_prompt", 0.7, re.compile(r"\byour new (?:system )?(?:prompt|instructions|rules)\b", _I)),
    (
        "rules_void",
        0.8,
        re.compile(
            r"\b(?:previous|prior|earlier|above|old|original)\s+(?:rules|instructions|guidelines|directives)\s+"
            r"(?:are|is)\s+(?:void|cancell?ed|revoked|no longer)",
            _I,
        ),
    ),
    ("obey_now", 0.5, re.compile(r"\byou (?:must|will|shall)\s+(?:now\s+)?(?:obey|comply)\b", _I)),
    ("chatml_system", 1.0, re.compile(r"<\|im_start\|>\s*system|<<SYS>>", _I)),
    ("you_are_now", 0.5, re.compile(r"\byou are (?:now|no longer)\b|\bfrom now on,? you (?:are|will)\b", _I)),
    (
        "jailbreak_persona",
        0.7,
        re.compile(r"(?-i:\bDAN\b)|\b(?:do anything now|developer mode|jailbr(?:eak|oken)|god mode)\b", _I),
    ),
    (
        "unrestricted",
        0.6,
        re.compile(
            r"\b(?:act as|pretend (?:to be|you are)|roleplay as|you are)\b[^.\n]{0,30}?"
            r"\b(?:unrestricted|unfiltered|uncensored|"
            r"without (?:any )?(?:restrictions|filters|limits|rules))",
            _I,
        ),
    ),
    (
        "no_limits",
        0.4,
        re.compile(r"\bwithout (?:any )?(?:restrictions|filters|limitations|censorship|ethical)\b", _I),
    ),
    (
        "chat_markup",
        0.9,
        re.compile(
            r"<\|(?:im_start|im_end|system|endoftext|start_header_id)\|>|\[/?(?:INST|SYS)\]|<</?SYS>>", _I
        ),
    ),
    ("role_line", 0.6, re.compile(r"(?m)^\s*(?:#+\s*)?(?:system|assistant|developer)\s*(?:prompt)?\s*:", _I)),
    ("role_tag", 0.6, re.compile(r"</?(?:system|instructions?|admin|developer)(?:_prompt)?>", _I)),
    (
        "hide_from_user",
        0.8,
        re.compile(
            r"\b(?:do not|don't|never)\s+(?:tell|inform|mention (?:this )?to|reveal (?:this )?to|alert)"
            r"\s+the user\b",
            _I,
        ),
    ),
    (
        "address_the_ai",
        0.5,
        re.compile(
            r"\b(?:attention|note to|message for|instructions? for|hey|dear)\b[^.\n]{0,20}?"
            r"\b(?:ai|assistant|llm|language model|claude|chatgpt|gpt|agent|bot)s?\b[,:!]",
            _I,
        ),
    ),
    ("if_you_are_ai", 0.5, re.compile(r"\bif you are an? (?:ai|llm|language model|assistant|agent)\b", _I)),
    (
        "exfiltrate",
        0.6,
        re.compile(
            r"\b(?:send|post|upload|exfiltrate|forward|transmit|email|curl)\b[^.\n]{0,60}?"
            r"(?:\b(?:api[_ ]?keys?|credentials|secrets|passwords?|private keys?|env(?:ironment)? variables|"
            r"ssh keys?|session tokens?|cookies)\b|\.env\b)",
            _I,
        ),
    ),
    ("pipe_to_shell", 0.4, re.compile(r"\b(?:curl|wget)\s+[^|\n]{1,200}\|\s*(?:ba|z)?sh\b", _I)),
)
_BASE64 = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}")
_TAGS = re.compile("[\U000e0000-\U000e007f]+")


@dataclass(frozen=True, slots=True)
class Verdict:
    score: float
    rules: tuple[str, ...]


def score(text: str) -> Verdict:
    """The injection score of `text` and the rules that matched."""
    hits = _match(text)
    for hidden in _hidden(text):
        inner = _match(hidden)
        if inner:
            hits["encoded_payload"] = 1.0
            hits.update(inner)
    return Verdict(round(sum(hits.values()), 3), tuple(sorted(hits)))


def _match(text: str) -> dict[str, float]:
    return {name: weight for name, weight, rx in RULES if rx.search(text)}


def _hidden(text: str) -> list[str]:
    """Text hidden in base64 runs or in Unicode tag characters (invisible 'ASCII smuggling')."""
    out = []
    for m in _TAGS.finditer(text):
        out.append("".join(chr(ord(c) - 0xE0000) for c in m.group()))
    for m in _BASE64.finditer(text):
        raw = m.group()
        try:
            decoded = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if decoded.isprintable() or all(c.isprintable() or c in "\n\r\t" for c in decoded):
            out.append(decoded)
    return out
