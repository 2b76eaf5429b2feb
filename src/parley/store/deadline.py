"""A timeout for calls to shared state that does not take a late event loop for a slow server.

`asyncio.timeout` cancels the task when its timer runs. On a CPU-overloaded gateway the loop can
be blocked past the deadline while the reply is already in the socket: the loop then reads it and
schedules the task's wake-up, but the timer runs in the same turn and cancels the task first. The
call looks timed out though Redis answered in time, and one such timeout marks the link down,
which moves budgets to per-process holds (an overshoot risk with several workers).

`within(seconds)` is `asyncio.timeout(seconds)` with two differences:
- when the timer runs, the cancellation is queued behind the wake-ups already due (a reply read
  in this turn is taken);
- when the timer runs late (more than a tenth of the timeout past the deadline: the loop was
  blocked and could not look at the socket), the call gets `seconds` more from then, up to
  `STRETCH` times `seconds` in all (redis-py's own bounds, the backstop, are that long).
A server that does not answer still fails the call: after `seconds` when the loop is on time,
and after at most `STRETCH` × `seconds` plus the loop's own delay otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

LATE_FRACTION = 0.1  # a timer later than this fraction of the timeout: the loop was blocked
STRETCH = 4  # a late loop extends a call's time up to this many timeouts


@contextlib.asynccontextmanager
async def within(seconds: float) -> AsyncIterator[None]:
    """Raise TimeoutError when the block takes longer than `seconds` (see the module docstring)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(None) as timeout:
        fire = _Fire(loop, timeout, seconds)
        try:
            yield
        finally:
            fire.handle.cancel()


class _Fire:
    """The timer behind `within`: extends the time when it ran late, else expires the timeout."""

    __slots__ = ("handle", "late", "limit", "loop", "seconds", "timeout", "when")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: asyncio.Timeout, seconds: float) -> None:
        self.loop, self.timeout, self.seconds = loop, timeout, seconds
        self.late = seconds * LATE_FRACTION
        self.when = loop.time() + seconds
        self.limit = self.when + seconds * (STRETCH - 1)
        self.handle = loop.call_at(self.when, self.run)

    def run(self) -> None:
        now = self.loop.time()
        when = extended(self.when, now, self.seconds, self.limit)
        if when is not None:
            self.when = when
            self.handle = self.loop.call_at(when, self.run)
        else:
            self.timeout.reschedule(now)  # (a deadline already passed: expires on the next turn)


def extended(deadline: float, now: float, seconds: float, limit: float) -> float | None:
    """The new deadline of a call whose timer ran at `now` for `deadline`: None when it expires
    (the timer was on time, or the call had its `limit`)."""
    if now - deadline > seconds * LATE_FRACTION and now < limit:
        return min(now + seconds, limit)
    return None
