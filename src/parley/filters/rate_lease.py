"""Rate-limit leases (`parley.store.lease`): blocks of rpm and parallel slots per subject.

Granted by the acquisition (`rate_limit_store.ACQUIRE_FN`) with a request's own slots: `g` more
entries in the subject's rpm log, scored `lease_ms` ahead (a slot counts for a window from its
latest possible use), and `g` more members in its parallel set. A lease serves while it has slots
and the subject's tokens in the window (as Redis last said, plus what its own requests used since)
are under half the tpm limit. When it closes it gives back the rpm slots it did not hand out and
adds its requests' tokens; when its last request is done, its parallel slots.
"""

from __future__ import annotations

from collections.abc import Callable

from parley.core.context import LimitSpec
from parley.store.lease import Lease, LeaseBook
from parley.store.redis_link import RedisLink

# KEYS: the subject's rpm log, token counter, parallel set. ARGV: tag, tokens, first and last rpm
# slot to give back, parallel slots to give back, '1' when the subject has a tpm limit.
LEASE_END_FN = """
local function rl_lease_end(KEYS, ARGV)
  local tag, tokens = ARGV[1], tonumber(ARGV[2])
  if tokens > 0 and ARGV[6] == '1' then
    redis.call('HINCRBY', KEYS[2], string.format('%d', math.floor(clock() / 60000)), ARGV[2])
    redis.call('PEXPIRE', KEYS[2], '130000')
  end
  local from, to, pn = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  if from <= to then
    local z = {}
    for j = from, to do z[#z + 1] = tag .. ':' .. j end
    redis.call('ZREM', KEYS[1], unpack(z))
  end
  if pn > 0 then
    local z = {}
    for j = 1, pn do z[#z + 1] = tag .. ':p' .. j end
    redis.call('ZREM', KEYS[3], unpack(z))
  end
  return 1
end
"""

Keys = tuple[str, str, str]


class RateLease(Lease):
    __slots__ = ("book", "keys", "par", "reqs_at", "rpm", "spec", "tokens", "toks_at")

    def __init__(
        self, book: RateLeases, spec: LimitSpec, keys: Keys, tag: str, grant: tuple[int, ...]
    ) -> None:
        super().__init__(tag, book.expiry())
        self.book = book
        self.spec = spec
        self.keys = keys
        self.rpm, self.par, self.reqs_at, self.toks_at = grant
        self.tokens = 0  # its requests' tokens, not yet added in Redis

    def room(self) -> bool:
        spec = self.spec
        if self.served >= self.rpm or self.inflight >= self.par:
            return False
        return not spec.tpm or 2 * (self.toks_at + self.tokens) < spec.tpm

    def used(self) -> tuple[int, int]:
        """(requests, tokens) in the window as this lease knows them, for the reply's headers."""
        return self.reqs_at + self.served, self.toks_at + self.tokens

    def finish(self, tokens: int) -> None:
        self.tokens += tokens
        self.done()

    def closing(self) -> None:
        unused = self.rpm - self.served if self.spec.rpm else 0
        if self.inflight and (unused or self.tokens):
            self._give_back(self.served + 1, self.rpm if unused else 0, 0)
            self.rpm = self.served  # (given back: not again when it ends)

    def ended(self) -> None:
        unused = self.rpm - self.served if self.spec.rpm else 0
        first = self.served + 1 if unused else 1
        self._give_back(first, self.rpm if unused else 0, self.par if self.spec.max_parallel else 0)

    def _give_back(self, first: int, last: int, par: int) -> None:
        tokens, self.tokens = self.tokens, 0
        if not (tokens or first <= last or par):
            return
        args = [self.tag, tokens, first, last, par, "1" if self.spec.tpm else "0"]
        self.book.send(list(self.keys), args)


class RateLeases(LeaseBook[RateLease]):
    def __init__(self, link: RedisLink, keys: Callable[[LimitSpec], Keys]) -> None:
        super().__init__(link.lease_ms, link.lease_max_requests)
        self.link = link
        self.keys = keys
        self._step = link.later.register(LEASE_END_FN, "rl_lease_end")
        link.closers.append(self.close_all)

    def send(self, keys: list[str], args: list) -> None:
        self.link.later.add(self._step, keys, args, _lost)

    def claim(self, specs: list[LimitSpec]) -> list[RateLease] | None:
        """The leases that can admit a request under every one of `specs` (None: ask Redis)."""
        out = []
        for spec in specs:
            lease = self.serving((spec.scope, spec.id))
            if lease is None or lease.spec != spec or not lease.room():
                return None
            out.append(lease)
        return out

    def wants(self, specs: list[LimitSpec]) -> list[int]:
        """Per spec, the lease size to ask for with a request that asks Redis anyway (0: none)."""
        out = []
        for spec in specs:
            subject = (spec.scope, spec.id)
            lease = self.serving(subject)
            room = lease is not None and lease.spec == spec and lease.room()
            half_used = lease is not None and 2 * lease.served >= lease.rpm
            out.append(self.renewal(subject, lease, room, half_used))
        return out

    def granted(
        self, specs: list[LimitSpec], wants: list[int], tag: str, out: list, used: list[tuple[int, int]]
    ) -> None:
        """Install the leases Redis granted (`out`: the acquisition's answer, `tag` the leases')."""
        base = 2 + 2 * len(specs)
        for i, spec in enumerate(specs):
            if not wants[i]:
                continue
            subject = (spec.scope, spec.id)
            rpm, par = (int(out[base + 2 * i]), int(out[base + 2 * i + 1])) if len(out) > base else (0, 0)
            if rpm <= 0 or par <= 0:
                self.install(subject, None)
                continue
            self.install(subject, RateLease(self, spec, self.keys(spec), tag, (rpm, par, *used[i])))

    def ended(self, lease: RateLease) -> None:
        lease.ended()


def _lost() -> None:
    """Redis missed a lease's end: its rpm slots pass with the window, its parallel slots go stale
    (`LEASE_MS`) and its tokens are not counted in Redis (the local limiter counted them)."""
