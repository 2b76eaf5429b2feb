"""Small, explicit checks for admin request bodies (admin is not the hot path, but bad input
still gets a 400 naming the field, never a 500)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from parley.core.errors import GatewayError
from parley.spend.periods import add_duration, parse_duration, parse_time

MAX_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: the last time an ISO 8601 reply can show
MIN_TIME = -62135596800.0  # 0001-01-01T00:00:00Z
MAX_INT = 2**63 - 1  # the largest integer a database column holds


def bad(message: str, field: str | None = None) -> GatewayError:
    return GatewayError(400, message, "invalid_request_error", param=field)


def _str(name: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise bad(f"{name}: must be a non-empty string", name)
    if len(v) > 255:
        raise bad(f"{name}: at most 255 characters", name)
    return v


def _float(name: str, v: Any) -> float:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 or v != v:
        raise bad(f"{name}: must be a number >= 0", name)
    return float(v)


def _int(name: str, v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_INT:
        raise bad(f"{name}: must be an integer from 0 to {MAX_INT}", name)
    return v


def _strs(name: str, v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise bad(f"{name}: must be a list of strings", name)
    return list(dict.fromkeys(v))


def _dict(name: str, v: Any) -> dict:
    if not isinstance(v, dict):
        raise bad(f"{name}: must be an object", name)
    return v


def _bool(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise bad(f"{name}: must be true or false", name)
    return v


def _duration(name: str, v: Any) -> str:
    try:
        parse_duration(v)
        end = add_duration(time.time(), v)
    except ValueError as e:
        raise bad(f"{name}: {e}", name) from None
    except OverflowError:
        end = math.inf
    if not end <= MAX_TIME:
        raise bad(f"{name}: too long (it must end before the year 10000)", name)
    return v


def _mode(name: str, v: Any) -> str:
    if v not in ("strict", "soft"):
        raise bad(f'{name}: must be "strict" or "soft"', name)
    return v


def _time(name: str, v: Any) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        when = float(v)
    else:
        try:
            when = parse_time(str(v))
        except ValueError:
            raise bad(f"{name}: must be an ISO 8601 time", name) from None
    if not MIN_TIME <= when <= MAX_TIME:
        raise bad(f"{name}: must be between the years 1 and 9999", name)
    return when


CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "str": _str,
    "float": _float,
    "int": _int,
    "strs": _strs,
    "dict": _dict,
    "bool": _bool,
    "duration": _duration,
    "mode": _mode,
    "time": _time,
}
OPENAPI_TYPES = {
    "str": {"type": "string"},
    "float": {"type": "number"},
    "int": {"type": "integer"},
    "strs": {"type": "array", "items": {"type": "string"}},
    "dict": {"type": "object"},
    "bool": {"type": "boolean"},
    "duration": {"type": "string", "example": "30d"},
    "mode": {"type": "string", "enum": ["strict", "soft"]},
    "time": {"type": "string", "format": "date-time"},
}

# Fields every budget-holding subject takes (keys, users, teams, customers).
BUDGET_FIELDS = {
    "models": "strs",
    "max_budget": "float",
    "budget_duration": "duration",
    "rpm_limit": "int",
    "tpm_limit": "int",
    "max_parallel_requests": "int",
    "metadata": "dict",
    "blocked": "bool",
    "spend": "float",
}


def take(body: dict[str, Any], spec: dict[str, str]) -> dict[str, Any]:
    """The fields of `spec` present in `body`, checked; null is kept (it clears a field).
    Fields not in `spec` are ignored, as LiteLLM does."""
    out: dict[str, Any] = {}
    for name, kind in spec.items():
        if name in body:
            value = body[name]
            out[name] = None if value is None else CHECKS[kind](name, value)
    return out


def budget_columns(values: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """Column values for checked budget fields; a new budget_duration starts a period now."""
    now = time.time() if now is None else now
    cols = dict(values)
    if "budget_duration" in values:
        duration = values["budget_duration"]
        cols["budget_reset_at"] = add_duration(now, duration) if duration else None
    if cols.get("spend") is None:
        cols.pop("spend", None)
    if cols.get("blocked") is None:
        cols.pop("blocked", None)
    return cols


def check_guardrails(values: dict[str, Any], configured: Any) -> None:
    """Guardrail names given to a key or team must be in the config's `guardrails:` list."""
    names = values.get("guardrails") or []
    known = {spec.name for spec in configured}
    unknown = [name for name in names if name not in known]
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise bad(f"guardrails: {', '.join(unknown)} not configured; configured: {listed}", "guardrails")


def require(body: dict[str, Any], name: str) -> Any:
    if body.get(name) is None:
        raise bad(f"{name}: Field required", name)
    return body[name]
