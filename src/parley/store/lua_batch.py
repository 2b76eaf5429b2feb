"""Several Lua steps in one round trip to Redis.

`Combined`: one script made of parts (rate limits, budget holds, cooldowns ...), each a Lua
function run on its own slice of KEYS and ARGV, in order; a part may stop the ones after it (a
refusal), and a part's `check` runs before any part changes anything (a budget that must first be
seeded from the database aborts the whole call unchanged). `SettleBatch`: fire-and-forget steps
(the settlements after a reply) gathered across requests and sent as one script call per flush.
Both are registered scripts: EVALSHA, loaded again on NOSCRIPT (a restarted Redis).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from parley.store.redis_errors import RedisUnavailable

if TYPE_CHECKING:
    from parley.store.redis_link import RedisLink

log = logging.getLogger("parley.redis")

# The time, read from Redis once per script call and shared by its parts (the settlements carried
# along and the acquisition then agree on the minute): ms since the epoch, a number and its digits.
CLOCK = """
local clock_ms, clock_digits
local function clock()
  if not clock_ms then
    local t = redis.call('TIME')
    clock_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    clock_digits = string.format('%d', clock_ms)
  end
  return clock_ms, clock_digits
end
"""

_SLICE = (
    CLOCK
    + """
local function slice(t, from, n)
  return {unpack(t, from, from + n - 1)}
end
"""
)


@dataclass(frozen=True, slots=True)
class LuaPart:
    """Lua source defining `run(KEYS, ARGV) -> result, stop` (and optionally `check(KEYS, ARGV)`,
    whose non-nil result aborts the call before anything changed)."""

    source: str
    run: str
    check: str | None = None


@dataclass(slots=True)
class Ask:
    """What one part needs for one request."""

    keys: list[str]
    args: list[Any]
    needed: bool = True  # False: worth sending only along with a needed part (a cache refresh)
    data: Any = None  # the asker's own, handed back with the result


def combined_lua(parts: Sequence[LuaPart]) -> str:
    """The arguments come as one JSON array (decoded in Redis by cjson: one argument to encode
    and parse instead of dozens): (key count, arg count) per part, -1 for a part not asked this
    time, then the parts' arguments. The reply, JSON too: each part's result (false: not run),
    then the number of the part whose check aborted the call (0: none did)."""
    n = len(parts)
    lines = [_SLICE, *(p.source for p in parts)]
    lines.append(f"""
local function admit(KEYS, ARGV)
  local keys, args, out = {{}}, {{}}, {{}}
  local k, a = 1, {2 * n + 1}
  out[{n + 1}] = 0
  for i = 1, {n} do
    out[i] = false
    local nk, na = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
    if na >= 0 then
      keys[i] = slice(KEYS, k, nk); args[i] = slice(ARGV, a, na); k = k + nk; a = a + na
    end
  end""")
    for i, p in enumerate(parts, 1):
        if p.check:
            lines.append(
                f"  if args[{i}] then local r = {p.check}(keys[{i}], args[{i}]); "
                f"if r then out[{i}] = r; out[{n + 1}] = {i}; return out end end"
            )
    for i, p in enumerate(parts, 1):
        lines.append(
            f"  if args[{i}] then local r, stop = {p.run}(keys[{i}], args[{i}]); out[{i}] = r; "
            "if stop then return out end end"
        )
    lines.append("  return out\nend\nreturn cjson.encode(admit(KEYS, cjson.decode(ARGV[1])))")
    return "\n".join(lines)


class Combined:
    """One script over `parts`; `call` sends the asks (None: part not asked) in one EVALSHA."""

    def __init__(self, link: RedisLink, parts: Sequence[LuaPart]) -> None:
        self.link = link
        self.parts = list(parts)
        self._script = link.script(combined_lua(self.parts))

    async def call(self, asks: Sequence[Ask | None]) -> tuple[list[Any], int]:
        """Each part's result (None where it was not asked or did not run), and the index of the
        part whose check aborted the call (-1: none did). Raises RedisUnavailable."""
        head: list[Any] = []
        keys: list[str] = []
        args: list[Any] = []
        for ask in asks:
            if ask is None:
                head += [-1, -1]
            else:
                head += [len(ask.keys), len(ask.args)]
                keys += ask.keys
                args += ask.args
        out = orjson.loads(await self.link.eval(self._script, keys, [orjson.dumps(head + args)]))
        return [r if r is not False else None for r in out[:-1]], int(out[-1]) - 1


_DISPATCH = """
local function settle_steps(KEYS, ARGV)
  local n = tonumber(ARGV[1])
  local k, a = 1, 2 + 3 * n
  for j = 1, n do
    local b = 3 * (j - 1)
    local p, nk, na = tonumber(ARGV[2 + b]), tonumber(ARGV[3 + b]), tonumber(ARGV[4 + b])
    settle_fns[p](slice(KEYS, k, nk), slice(ARGV, a, na))
    k = k + nk; a = a + na
  end
  return n
end
"""

MAX_BATCH = 128  # steps per call: bounds how long one script holds Redis


@dataclass(slots=True)
class _Step:
    part: int
    keys: list[str]
    args: list[Any]
    failed: Callable[[], None]  # called when Redis could not be reached


class SettleBatch:
    """Steps that need no answer (the settlements after a reply), gathered across requests.

    As prompt as a task spawned for each (they go out once the current turn of the event loop is
    over), but an admission call made meanwhile carries them (`take`, as the `part()` of its
    script), and the rest go in one call for all the requests that ended in that turn; while a
    call is in flight, what is queued waits for the next one."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self._parts: list[tuple[str, str]] = []  # (Lua source, function name)
        self._script: Any = None
        self._queue: list[_Step] = []
        self._task: asyncio.Task[None] | None = None
        self._due_handle: asyncio.Handle | None = None
        self._due_loop: asyncio.AbstractEventLoop | None = None  # (the SDK may change loops)

    def register(self, source: str, fn: str) -> int:
        """A step kind: Lua `source` defining `fn(KEYS, ARGV)`; returns its id for `add`."""
        for i, known in enumerate(self._parts):
            if known == (source, fn):
                return i + 1
        self._parts.append((source, fn))
        self._script = None
        return len(self._parts)

    @property
    def kinds(self) -> int:
        return len(self._parts)

    def part(self) -> LuaPart:
        """The step kinds registered so far, as a part of another script (`settle_steps`)."""
        sources = "\n".join(source for source, _ in self._parts)
        names = ", ".join(fn for _, fn in self._parts)
        return LuaPart(f"{sources}\nlocal settle_fns = {{{names}}}\n{_DISPATCH}", "settle_steps")

    def add(self, part: int, keys: list[str], args: list[Any], failed: Callable[[], None]) -> None:
        self._queue.append(_Step(part, keys, args, failed))
        self._schedule()

    def take(self, kinds: int) -> Ask | None:
        """Queued steps (of the first `kinds` kinds) for an admission call to carry; give them
        back with `failed` or `requeue` if that call does not run them."""
        if not self._queue:
            return None
        if kinds >= len(self._parts):  # (always, unless a kind was registered after the script)
            steps, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        else:
            steps = [s for s in self._queue[:MAX_BATCH] if s.part <= kinds]
            if not steps:
                return None
            taken = {id(s) for s in steps}
            self._queue = [s for s in self._queue if id(s) not in taken]
        keys, args = _encode(steps)
        return Ask(keys, args, needed=False, data=steps)

    def requeue(self, steps: list[_Step]) -> None:
        self._queue[:0] = steps
        self._schedule()

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        if self._due_handle is None or self._due_loop is not loop:
            self._due_handle, self._due_loop = loop.call_soon(self._due), loop

    def _due(self) -> None:
        self._due_handle = None
        task, loop = self._task, asyncio.get_running_loop()
        if self._queue and (task is None or task.done() or task.get_loop() is not loop):
            self._task = loop.create_task(self._drain())

    async def _drain(self) -> None:
        while self._queue:
            steps, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            await self._send(steps)

    async def drain(self) -> None:
        """Send what is queued now (at shutdown)."""
        if self._due_handle is not None:
            self._due_handle.cancel()
            self._due_handle = None
        task = self._task
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            await asyncio.wait([task], timeout=self.link.timeout * 4)
        await self._drain()

    async def _send(self, steps: list[_Step]) -> None:
        if self._script is None:
            lua = _SLICE + self.part().source + "return settle_steps(KEYS, cjson.decode(ARGV[1]))"
            self._script = self.link.script(lua)
        keys, args = _encode(steps)
        try:
            await self.link.eval(self._script, keys, [orjson.dumps(args)])
        except RedisUnavailable:
            failed(steps)


def _encode(steps: list[_Step]) -> tuple[list[str], list[Any]]:
    head: list[Any] = [len(steps)]
    keys: list[str] = []
    args: list[Any] = []
    for s in steps:
        head += [s.part, len(s.keys), len(s.args)]
        keys += s.keys
        args += s.args
    return keys, head + args


def failed(steps: list[_Step]) -> None:
    """Redis did not get these steps: each one's fallback."""
    for s in steps:
        try:
            s.failed()
        except Exception:  # one step's fallback must not lose the others'
            log.exception("a settlement's fallback failed")
