"""Fault-injection helpers: bounded client load through the official anthropic SDK, a schedule of
faults (kill -9, pause, restart of Redis, Postgres, a gateway) and checks of what clients saw."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anthropic

ALLOWED = {200, 402, 429, 503, 529}
CONNECTION = -1  # the status recorded for a connection error or timeout


@dataclass(frozen=True, slots=True)
class Outcome:
    start: float  # time.monotonic()
    end: float
    gateway: int
    key: str  # the key's name in the load's key map
    status: int  # HTTP status, or CONNECTION
    request_id: str | None


@dataclass(slots=True)
class Fault:
    """One fault: `inject` at `start`, `heal` after `hold` seconds (both recorded)."""

    name: str
    inject: Callable[[], None]
    heal: Callable[[], None]
    hold: float
    gateway: int | None = None  # the gateway this fault kills, if any
    start: float = 0.0
    end: float = 0.0


@dataclass(slots=True)
class Load:
    """`requests` requests from `threads` threads, paced to spread over `duration` seconds; thread
    t's i-th request goes to gateway (t + i) mod n with key (t + i) mod len(keys)."""

    urls: list[str]
    keys: dict[str, str]
    body: dict[str, Any]
    threads: int
    requests: int
    duration: float
    outcomes: list[Outcome] = field(default_factory=list)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        deadline = time.monotonic() + self.duration + 15.0
        for t in range(self.threads):
            worker = threading.Thread(target=self._run, args=(t, deadline), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def join(self) -> list[Outcome]:
        for worker in self._workers:
            worker.join()
        return sorted(self.outcomes, key=lambda o: o.start)

    def _run(self, t: int, deadline: float) -> None:
        count = self.requests // self.threads
        pace = self.duration / max(count, 1)
        clients = [anthropic.Anthropic(base_url=u, api_key="-", max_retries=0, timeout=10) for u in self.urls]
        names = sorted(self.keys)
        for i in range(count):
            if time.monotonic() > deadline:
                return
            gateway, name = (t + i) % len(self.urls), names[(t + i) % len(names)]
            self.outcomes.append(self._one(clients[gateway], gateway, name))
            time.sleep(pace)

    def _one(self, client: anthropic.Anthropic, gateway: int, name: str) -> Outcome:
        start = time.monotonic()
        status, request_id = send(client, self.keys[name], self.body)
        return Outcome(start, time.monotonic(), gateway, name, status, request_id)


def send(client: anthropic.Anthropic, key: str, body: dict[str, Any]) -> tuple[int, str | None]:
    """(status, request id) of one request with `key`."""
    try:
        message = client.with_options(api_key=key).messages.create(**body)
    except anthropic.APIStatusError as e:
        return e.status_code, e.request_id
    except anthropic.APIConnectionError:  # includes timeouts
        return CONNECTION, None
    return 200, message._request_id


def run_faults(faults: list[Fault], gap: float) -> None:
    """Each fault in turn: wait `gap`, inject, hold, heal (times recorded on the fault)."""
    for fault in faults:
        time.sleep(gap)
        fault.start = time.monotonic()
        fault.inject()
        time.sleep(fault.hold)
        fault.heal()
        fault.end = time.monotonic()


def unexpected(outcomes: list[Outcome], faults: list[Fault], slack: float = 0.5) -> list[Outcome]:
    """Outcomes no fault explains: a status outside ALLOWED, or a connection error that is not to a
    gateway while it was being killed and restarted (from `slack` before the kill)."""
    bad = []
    for o in outcomes:
        if o.status == CONNECTION:
            if not any(_killed(f, o, slack) for f in faults):
                bad.append(o)
        elif o.status not in ALLOWED:
            bad.append(o)
    return bad


def _killed(fault: Fault, o: Outcome, slack: float) -> bool:
    return fault.gateway == o.gateway and fault.start - slack <= o.end and o.start <= fault.end + slack


def recovery(outcomes: list[Outcome], fault: Fault) -> float | None:
    """Seconds from the fault's heal until the first success started after it (None: never)."""
    after = [o.end for o in outcomes if o.status == 200 and o.start >= fault.end]
    return min(after) - fault.end if after else None


def lost(outcomes: list[Outcome], stored: set[str]) -> list[Outcome]:
    """Successes without a spend row."""
    return [o for o in outcomes if o.status == 200 and o.request_id not in stored]


def admitted_in_window(outcomes: list[Outcome], key: str, window: float) -> int:
    """The most requests of `key` the rate limiter let through (not 429, answered) in any
    `window`-second span of start times."""
    times = sorted(o.start for o in outcomes if o.key == key and o.status not in (429, CONNECTION))
    best, first = 0, 0
    for last, t in enumerate(times):
        while t - times[first] > window:
            first += 1
        best = max(best, last - first + 1)
    return best


def summary(outcomes: list[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        name = "connection" if o.status == CONNECTION else str(o.status)
        counts[name] = counts.get(name, 0) + 1
    return counts
