"""The in-process rpm log (an array of request times with a moving head, compacted now and then)
admits exactly what a plain list of the window's request times would, whatever the pace."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import parley.filters.rate_limit_store as store
from parley.core.context import LimitSpec


@settings(max_examples=100, deadline=None)
@example(rpm=100, steps=[1_000] * 200)  # a steady pace: compacted with a minute of live times
@example(rpm=3, steps=[20_000] * 30)  # at the limit, the oldest leaving the window
@given(
    rpm=st.integers(1, 40),
    steps=st.lists(st.integers(0, 7_000), min_size=1, max_size=400),  # ms between requests
)
def test_the_log_admits_what_the_window_holds(rpm, steps):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "_COMPACT_AT", 8)  # compacted often, as a long run would be
        clock = [1_800_000_000.0]
        patch.setattr(store.time, "time", lambda: clock[0])
        _run(rpm, steps, clock)


def _run(rpm: int, steps: list[int], clock: list[float]) -> None:
    limiter = store.LocalLimiter()
    spec = LimitSpec("key", "k", rpm=rpm)
    admitted: list[int] = []  # the reference: every admitted request's ms time
    for gap in steps:
        clock[0] += gap / 1000
        now = int(clock[0] * 1000)
        in_window = [t for t in admitted if t > now - store.WINDOW_MS]
        decision = limiter.acquire([spec], f"r{len(admitted)}")
        assert decision.allowed == (len(in_window) < rpm)
        if decision.allowed:
            assert decision.used == [(len(in_window) + 1, 0)]
            admitted.append(now)
        else:  # until the oldest request in the window leaves it
            assert decision.kind == "rpm"
            assert decision.wait_ms == min(in_window) + store.WINDOW_MS - now
        subject = limiter._subjects["key", "k"]
        live = [t for t in admitted if t > now - store.WINDOW_MS]
        assert len(subject.requests) - subject.head == len(live)
        assert len(subject.requests) <= 2 * rpm + 2 * 8 + 2  # expired times do not pile up


def test_a_clock_stepping_back_keeps_the_log_in_order(monkeypatch):
    clock = [1_800_000_000.0]
    monkeypatch.setattr(store.time, "time", lambda: clock[0])
    limiter = store.LocalLimiter()
    spec = LimitSpec("key", "k", rpm=3)
    assert limiter.acquire([spec], "a").allowed
    clock[0] -= 5  # NTP steps the clock back
    assert limiter.acquire([spec], "b").allowed
    assert limiter.acquire([spec], "c").allowed
    assert not limiter.acquire([spec], "d").allowed  # still three in the window
    times = list(limiter._subjects["key", "k"].requests)
    assert times == sorted(times)
    clock[0] += 66  # a minute after the first (the two stamped with its time): all have left
    assert limiter.acquire([spec], "e").allowed
