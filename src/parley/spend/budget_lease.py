"""Budget leases (`parley.store.lease`): money held in Redis in one block, handed out in process.

A lease is a hold like a request's (`budget_lua.budget_hold`: on every budget of the request, under
the instance's heartbeat), taken with one request's own reservation when what is left after it
covers at least eight such blocks. The requests it admits hold their cost bound on it locally and
add their real cost when done; when it closes and its last request is done, it is settled in Redis
like a request's hold: released, and the cost of all its requests added to every budget's spend.
No more can be spent than the budgets have left: a lease is money the other instances already see
as held. A crashed instance's leases are released with its other holds (its heartbeat lapses).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from parley.store.lease import Lease, LeaseBook

if TYPE_CHECKING:
    from parley.spend.ledger import BudgetLine

Subject = tuple[tuple[str, float], ...]  # the budgets (key, limit) a request holds money on


def subject_of(lines: list[BudgetLine]) -> Subject:
    return tuple((line.key, line.limit) for line in lines)


class BudgetLease(Lease):
    __slots__ = ("amount", "cost", "cost_before", "held", "lines")

    def __init__(self, tag: str, expires: float, amount: float, lines: list[BudgetLine]) -> None:
        super().__init__(tag, expires)
        self.amount = amount  # held in Redis
        self.held = 0.0  # the cost bounds of its requests in flight
        self.cost = 0.0  # the real cost of its requests that are done
        self.cost_before = 0.0  # its cost when Redis went down (the rest is settled in process)
        self.lines = lines

    def room(self, bound: float) -> bool:
        return self.amount - self.held - self.cost >= bound

    def take(self, bound: float) -> None:
        self.admit()
        self.held += bound

    def finish(self, bound: float, cost: float) -> None:
        self.held -= bound
        self.cost += cost
        self.done()


class BudgetLeases(LeaseBook[BudgetLease]):
    """The budget leases of one ledger; `settle` settles one whose requests are all done."""

    def __init__(self, lease_ms: int, max_requests: int, settle: Callable[[BudgetLease], None]) -> None:
        super().__init__(lease_ms, max_requests)
        self._settle = settle

    def claim(self, lines: list[BudgetLine], bound: float) -> BudgetLease | None:
        lease = self.serving(subject_of(lines))
        return lease if lease is not None and lease.room(bound) else None

    def ask(self, lines: list[BudgetLine], bound: float) -> tuple[str, float]:
        """The lease to ask for with a request's reservation: (tag, amount); ('', 0): none."""
        subject = subject_of(lines)
        lease = self.serving(subject)
        room = lease is not None and lease.room(bound)
        half_used = lease is not None and 2 * (lease.held + lease.cost) >= lease.amount
        size = self.renewal(subject, lease, room, half_used)
        return (self.tag(), size * bound) if size else ("", 0.0)

    def granted(self, lines: list[BudgetLine], tag: str, amount: float | None) -> None:
        """Install the lease Redis granted (None: none; 0 for requests of no price)."""
        subject = subject_of(lines)
        if amount is None:
            self.install(subject, None)
            return
        self.install(subject, BudgetLease(tag, self.expiry(), amount, lines))

    def ended(self, lease: BudgetLease) -> None:
        self._settle(lease)

    def close_budget(self, key: str | None) -> None:
        """Close the leases on budget `key` (None: all): its limit or spend changed."""

        def on(subject: Hashable) -> bool:
            return key is None or any(k == key for k, _ in subject)  # type: ignore[attr-defined]

        self.close_all(on)
