"""Quota leases: a block of shared quota taken from Redis in one call and served from in process.

With Redis, every request used to ask Redis before it went upstream (rate-limit slots, a budget
hold). A lease is a block of that quota (rpm slots, parallel slots, budget money) that an instance
takes along with one request's own ask, recorded in Redis like that many requests' own (so the
other instances see it as used), and then hands out locally until it runs out or `lease_ms` has
passed. The quota a lease does not use is given back when it closes. Leases are granted only far
from a limit (the block is at most an eighth of what is left), so near a limit every request asks
Redis as before and the limit is as exact as it was; far from it, a limit can refuse a little
early (quota sits in other instances' leases for at most `lease_ms`), never late.

A `LeaseBook` keeps the current lease of each subject (a rate-limit subject, a set of budgets),
sizes the next one from what the last served (twice as many, from 4 up to `lease_max_requests`),
and lets one renewal at a time be asked for.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

MIN_REQUESTS = 4  # a first lease's size, and the least one is asked for
RENEWAL_WAIT = 2.0  # s: a renewal asked for and never answered (Redis failed) is given up after this


class Lease:
    """What every lease has: its tag in Redis, when it closes, what it serves now."""

    __slots__ = ("closed", "expires", "inflight", "on_end", "served", "tag")

    def __init__(self, tag: str, expires: float) -> None:
        self.tag = tag  # its name in Redis (members, hold id): unique across instances
        self.expires = expires  # monotonic time it stops serving
        self.closed = False
        self.inflight = 0  # requests it admitted that are not done
        self.served = 0  # requests it admitted
        self.on_end: Callable[[Any], None] | None = None  # its book's, once closed with none in flight

    def serving(self, now: float) -> bool:
        return not self.closed and now < self.expires

    def admit(self) -> None:
        self.served += 1
        self.inflight += 1

    def done(self) -> None:
        self.inflight -= 1
        if self.closed and self.inflight == 0:
            self._end()

    def close(self) -> None:
        """Stop serving; ends now or when the last request it admitted is done."""
        if self.closed:
            return
        self.closed = True
        self.closing()
        if self.inflight == 0:
            self._end()

    def closing(self) -> None:
        """What a kind of lease gives back when it closes (the ones it never handed out)."""

    def _end(self) -> None:
        end, self.on_end = self.on_end, None
        if end is not None:
            end(self)


L = TypeVar("L", bound=Lease)


class LeaseBook(Generic[L]):
    """The current lease per subject, and the size of the next one."""

    def __init__(self, lease_ms: int, max_requests: int, prefix: str = "") -> None:
        self.lease_s = lease_ms / 1000
        self.max_requests = max(MIN_REQUESTS, max_requests)
        self._tags = itertools.count(1)
        self._prefix = prefix or os.urandom(6).hex()  # (this process's, so tags are unique)
        self.current: dict[Hashable, L] = {}
        self._asked: dict[Hashable, float] = {}  # subject -> when a renewal was asked for
        self._size: dict[Hashable, int] = {}  # subject -> the next lease's size
        self.live: set[L] = set()  # leases not ended (serving, or closed with requests in flight)

    def serving(self, subject: Hashable) -> L | None:
        lease = self.current.get(subject)
        if lease is None:
            return None
        if lease.serving(time.monotonic()):
            return lease
        self.drop(subject)
        return None

    def want(self, subject: Hashable) -> int:
        """The size of the lease to ask for now with a request's own ask (0: none: one was asked
        for lately and not answered yet). Marks the renewal as asked for."""
        now = time.monotonic()
        asked = self._asked.get(subject)
        if asked is not None and now - asked < RENEWAL_WAIT:
            return 0
        if len(self._asked) > 4096:  # (renewals never answered: Redis failed meanwhile)
            self._asked = {s: t for s, t in self._asked.items() if now - t < RENEWAL_WAIT}
        self._asked[subject] = now
        return self._size.get(subject, MIN_REQUESTS)

    def tag(self) -> str:
        return f"L{self._prefix}.{next(self._tags)}"

    def install(self, subject: Hashable, lease: L | None) -> None:
        """The answer to a renewal: the new lease (None: none granted), the old one closed."""
        self._asked.pop(subject, None)
        if lease is None:
            return
        self.drop(subject)
        self.current[subject] = lease
        self.live.add(lease)
        lease.on_end = self._ended
        wait = max(0.0, lease.expires - time.monotonic()) + 0.001
        asyncio.get_running_loop().call_later(wait, self._expire, subject, lease)

    def _ended(self, lease: L) -> None:
        self.live.discard(lease)
        self.ended(lease)

    def ended(self, lease: L) -> None:
        """What a kind of lease does once closed with no request in flight (give back, settle)."""

    def renewal(self, subject: Hashable, lease: L | None, room: bool, half_used: bool) -> int:
        """The size of the lease to ask for along with a call to Redis made anyway (0: none). A
        lease without room is closed first, so what it gives back rides along with the call and
        Redis counts it before the grant; one half used is renewed along (renewals stay in step)."""
        if lease is not None and room:
            return self.want(subject) if half_used else 0
        if lease is not None:
            self.drop(subject)
        return self.want(subject)

    def _expire(self, subject: Hashable, lease: L) -> None:
        """The lease's time is up (a quiet subject's lease leaves `current` here)."""
        if self.current.get(subject) is lease:
            self.drop(subject)
        else:
            lease.close()

    def expiry(self) -> float:
        return time.monotonic() + self.lease_s

    def drop(self, subject: Hashable) -> None:
        """Close a subject's lease (expired, replaced, or its limits changed), sizing the next."""
        lease = self.current.pop(subject, None)
        if lease is None:
            return
        lease.close()
        self._size[subject] = min(self.max_requests, max(MIN_REQUESTS, 2 * lease.served))
        if len(self._size) > 4096:
            self._size.clear()

    def close_all(self, match: Callable[[Hashable], bool] | None = None) -> None:
        for subject in [s for s in self.current if match is None or match(s)]:
            self.drop(subject)


def nothing() -> None:
    """The claim of a filter with nothing to ask for a request (nothing to commit)."""
