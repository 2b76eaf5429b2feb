"""`batch_settings`: Message Batches run by the gateway (`/v1/messages/batches`).

run: whether this instance works batches (default true; every instance may, leases keep an item
with one runner); expiry_hours (24, as Anthropic's); results_retention_days (29); capacity_share:
the share of each deployment's rpm/tpm (and, while interactive calls are in flight, of its batch
concurrency) batches may use; deployment_concurrency: batch items in flight per deployment;
max_concurrency: batch items in flight per instance; lease_seconds: how long a claimed item is
held without renewal (a crashed instance's items are taken over after it); poll_interval: seconds
between looks for work (doubling while none is found, up to 5 s; a batch created on this process
wakes its runner at once); discount: off list price for gateway-run items (0 to 1);
native_gather_seconds / native_poll_seconds: how long items for a `native_batches` deployment are
gathered into one upstream batch, and how often that batch is polled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from parley.config.fields import Fields

BATCH_KEYS = frozenset(
    {
        "run",
        "expiry_hours",
        "results_retention_days",
        "capacity_share",
        "deployment_concurrency",
        "max_concurrency",
        "lease_seconds",
        "poll_interval",
        "discount",
        "native_gather_seconds",
        "native_poll_seconds",
    }
)


@dataclass(frozen=True)
class BatchSettings:
    run: bool = True
    expiry_hours: float = 24.0
    results_retention_days: float = 29.0
    capacity_share: float = 0.5
    deployment_concurrency: int = 8
    max_concurrency: int = 32
    lease_seconds: float = 60.0
    poll_interval: float = 0.5
    discount: float = 0.0
    native_gather_seconds: float = 1.0
    native_poll_seconds: float = 30.0

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], where: str) -> BatchSettings:
        f = Fields(settings, where)
        share = f.number("capacity_share", 0.5, positive=True)
        if share > 1:
            raise f.fail("capacity_share", "a number in (0, 1]", share)
        discount = f.number("discount", 0.0)
        if not 0 <= discount < 1:
            raise f.fail("discount", "a number in [0, 1)", discount)
        return cls(
            run=f.flag("run", True),
            expiry_hours=f.number("expiry_hours", 24.0, positive=True),
            results_retention_days=f.number("results_retention_days", 29.0, positive=True),
            capacity_share=share,
            deployment_concurrency=f.integer("deployment_concurrency", 8, positive=True),
            max_concurrency=f.integer("max_concurrency", 32, positive=True),
            lease_seconds=f.number("lease_seconds", 60.0, positive=True),
            poll_interval=f.number("poll_interval", 0.5, positive=True),
            discount=discount,
            native_gather_seconds=f.number("native_gather_seconds", 1.0, positive=True),
            native_poll_seconds=f.number("native_poll_seconds", 30.0, positive=True),
        )
