"""How much of each deployment batch items may use: they fill idle capacity only.

An item may start on a deployment while (1) fewer than `deployment_concurrency` batch items are in
flight there, or `capacity_share` of that while interactive calls are in flight on it too, and (2)
the deployment's traffic this minute (all of it, interactive first) is under `capacity_share` of its
`rpm` and `tpm`. Interactive calls are never held back: only batch items wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Sequence

from parley.config import BatchSettings
from parley.core.deployment import Deployment, Target
from parley.router.health import Health
from parley.router.settings import dep_limit

WAIT_STEP = 0.05  # seconds between looks while every deployment of an item is busy


class CapacityGate:
    def __init__(self, health: Health, settings: BatchSettings) -> None:
        self.health = health
        self.share = settings.capacity_share
        self.concurrency = settings.deployment_concurrency
        self.inflight: Counter[str] = Counter()  # batch attempts in flight, per deployment

    def has_room(self, dep: Deployment) -> bool:
        mine = self.inflight[dep.id]
        interactive = self.health.of(dep.id).inflight - mine
        cap = self.concurrency if interactive <= 0 else max(1, int(self.concurrency * self.share))
        if mine >= cap:
            return False
        requests, tokens = self.health.usage(dep.id)
        rpm, tpm = dep_limit(dep, "rpm"), dep_limit(dep, "tpm")
        if rpm is not None and requests >= rpm * self.share:
            return False
        return tpm is None or tokens < tpm * self.share

    async def wait(self, targets: Sequence[Target], stopping: asyncio.Event) -> None:
        """Until one of the item's deployments has room (or the runner stops)."""
        while not any(self.has_room(t.deployment) for t in targets) and not stopping.is_set():
            await asyncio.sleep(WAIT_STEP)

    @contextlib.asynccontextmanager
    async def hold(self, dep_id: str) -> AsyncIterator[None]:
        self.inflight[dep_id] += 1
        try:
            yield
        finally:
            self.inflight[dep_id] -= 1
