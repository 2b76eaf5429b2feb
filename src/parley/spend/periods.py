"""Durations as LiteLLM writes them (`30s`, `30m`, `1h`, `7d`, `2w`, `1mo`) and budget periods."""

from __future__ import annotations

import calendar
import datetime as dt
import re
import time

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w|mo)\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> tuple[int, str]:
    """(count, unit) for a duration string; ValueError with a readable message otherwise."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration like 30m, 1h, 7d or 1mo")
    return int(match.group(1)), match.group(2)


def add_duration(start: float, text: str) -> float:
    """`start` (epoch seconds) plus the duration; months step by calendar month (day clamped)."""
    count, unit = parse_duration(text)
    if unit != "mo":
        return start + count * _SECONDS[unit]
    when = dt.datetime.fromtimestamp(start, dt.UTC)
    month = when.month - 1 + count
    year, month = when.year + month // 12, month % 12 + 1
    day = min(when.day, calendar.monthrange(year, month)[1])
    return when.replace(year=year, month=month, day=day).timestamp()


def next_reset(reset_at: float, duration: str, now: float) -> float:
    """The first period boundary after `now`, stepping from `reset_at` by `duration`."""
    while reset_at <= now:
        reset_at = add_duration(reset_at, duration)
    return reset_at


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: str) -> float:
    """Epoch seconds from an ISO date/datetime (UTC if no zone) or a number."""
    try:
        return float(value)
    except ValueError:
        pass
    text = value.strip().replace("Z", "+00:00")
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def day_of(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


class DayStamp:
    """`day_of` for times that mostly fall on the same UTC day: the day's text is kept with its bounds."""

    __slots__ = ("_end", "_start", "_text")

    def __init__(self) -> None:
        self._start, self._end, self._text = 0.0, 0.0, ""

    def __call__(self, ts: float) -> str:
        if self._start <= ts < self._end:
            return self._text
        start = ts - ts % 86400
        self._start, self._end, self._text = start, start + 86400, day_of(ts)
        return self._text
