"""How much of each deployment batch items may use: they fill idle capacity only.

An item may start on a deployment while (1) fewer than `deployment_concurrency` batch items are in
flight there; while interactive calls are in flight on it too, `capacity_share` of that less one per
interactive call, but always one (so a batch still moves under steady traffic); and (2)
the deployment's traffic this minute (all of it, interactive first) is under `capacity_share` of its
`rpm` and `tpm`. Interactive calls are never held back: only batch items wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator, Sequence

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
        self.inflight: Counter[str] = Counter()  # batch items holding a slot, per deployment
        self.sent: Counter[str] = Counter()  # of those, the ones in the router (counted by Health)

    def has_room(self, dep: Deployment) -> bool:
        mine = self.inflight[dep.id]
        interactive = self.health.of(dep.id).inflight - self.sent[dep.id]
        cap = self.concurrency
        if interactive > 0:  # busy: the share, less one slot per interactive call, at least one
            cap = max(1, int(self.concurrency * self.share) - interactive)
        if mine >= cap:
            return False
        requests, tokens = self.health.usage(dep.id)
        rpm, tpm = dep_limit(dep, "rpm"), dep_limit(dep, "tpm")
        if rpm is not None and requests >= rpm * self.share:
            return False
        return tpm is None or tokens < tpm * self.share

    async def acquire(self, targets: Sequence[Target], stopping: asyncio.Event) -> str | None:
        """A slot on one of the item's deployments with room, waiting until there is one; None
        when the runner stops first. The router may still pick another deployment of the group
        (its own balancing), so per-deployment counts are exact for one-deployment groups and the
        group's total for larger ones."""
        while not stopping.is_set():
            for target in targets:
                if self.has_room(target.deployment):
                    self.inflight[target.deployment.id] += 1
                    return target.deployment.id
            await asyncio.sleep(WAIT_STEP)
        return None

    @contextlib.contextmanager
    def sending(self, dep_id: str) -> Iterator[None]:
        """Around the item's pipeline run, while the router's in-flight count includes it."""
        self.sent[dep_id] += 1
        try:
            yield
        finally:
            self.sent[dep_id] -= 1

    def release(self, dep_id: str) -> None:
        self.inflight[dep_id] -= 1
