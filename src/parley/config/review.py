"""The verdict on keys parley does not act on: a typo of a known key is an error, not a silence.

`review(doc, path)` raises ConfigError (one line, the first problem and how many more) when
- an unknown key is within a small edit distance of a name that belongs at its place
  ("general_settings.masterkey: unknown key; did you mean `master_key`?"),
- anything looks like a security setting (`master_key`, `database_url`, the section
  `general_settings`) without being it, or sits in the wrong section,
- `general_settings.strict_config: true` and any key is not acted on.
Otherwise it returns the `path (reason)` lines to report at startup.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from parley.config.fields import ConfigError
from parley.config.known import Unacted, unacted

# names whose misspelling silently turns security off
SECURITY = ("master_key", "database_url", "general_settings")
SECURITY_HOME = {"master_key": "general_settings", "database_url": "general_settings"}
SECURITY_DISTANCE = 3


def review(doc: Mapping[str, Any], path: str) -> list[str]:
    """The ignored-key lines for `doc`; ConfigError for a near miss or under strict_config."""
    keys = list(unacted(doc))
    problems = [p for p in (near_miss(u) for u in keys) if p]
    general = doc.get("general_settings")
    strict = isinstance(general, dict) and general.get("strict_config") is True
    if strict and not problems:
        problems = [f"{u.path}: {u.reason}; remove it (general_settings.strict_config is true)" for u in keys]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(f"{path}: {problems[0]}{more}")
    return [u.line for u in keys]


def near_miss(u: Unacted) -> str | None:
    """The error for `u` if it looks like a typo of a known name, else None."""
    home = SECURITY_HOME.get(u.key)
    if home is not None:
        return f"{u.path}: {u.key} belongs in {home}; move it there"
    if u.key in u.candidates:  # a LiteLLM name parley does not act on: reported, not a typo
        return None
    guess = closest(u.key, u.candidates - {u.key})
    if guess is None:
        guess = closest(u.key, SECURITY, SECURITY_DISTANCE)
    if guess is None:
        return None
    return f"{u.path}: {u.reason.split(';')[0]}; did you mean `{guess}`?"


def closest(key: str, names: Iterable[str], limit: int | None = None) -> str | None:
    """The name in `names` nearest to `key`, if near enough to be a typo of it."""
    norm = _norm(key)
    best: tuple[int, str] | None = None
    for name in sorted(names):
        target = _norm(name)
        allowed = limit if limit is not None else _allowed(target)
        if allowed < 0:
            continue
        d = distance(norm, target)
        if d <= allowed and (best is None or d < best[0]):
            best = (d, name)
    return best[1] if best else None


def _allowed(name: str) -> int:
    """Typos tolerated for a name of this length: none under 4 letters except case and dashes."""
    if len(name) < 4:
        return 0
    return 1 if len(name) < 8 else 2


def _norm(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def distance(a: str, b: str) -> int:
    """Edit distance counting a swap of neighbours as one edit (optimal string alignment)."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]
