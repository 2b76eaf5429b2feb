"""`GET /health`: each deployment checked with a one-token request, LiteLLM's answer shape.

Checks run on demand, never on a client request's path: the result is reused for
`health_check_interval` seconds, and concurrent callers share one run. Each deployment's check is
bounded by `health_check_timeout`. Wildcard deployments (`anthropic/*`) name no model to ask for
and are listed as not checked.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from parley.core.context import RequestContext
from parley.core.deployment import Deployment, Target
from parley.core.errors import GatewayError
from parley.providers.base import HubCall, Provider

PROBE = [{"role": "user", "content": "ping"}]


@dataclass(frozen=True, slots=True)
class Probe:
    deployment: Deployment
    error: str | None  # None: healthy

    def entry(self) -> dict[str, Any]:
        dep = self.deployment
        out: dict[str, Any] = {
            "model": f"{dep.provider}/{dep.model}",
            "model_name": dep.model_name,
            "model_id": dep.id,
            "api_base": dep.api_base,
        }
        if self.error is not None:
            out["error"] = self.error
        return out


class ModelHealth:
    def __init__(
        self, deployments: list[Deployment], providers: dict[str, Provider], interval: float, timeout: float
    ) -> None:
        self.deployments = deployments
        self.providers = providers
        self.interval = interval
        self.timeout = timeout
        self._report: dict[str, Any] | None = None
        self._checked_at = 0.0
        self._running: asyncio.Task[dict[str, Any]] | None = None

    async def report(self) -> dict[str, Any]:
        """The last report if fresh, else a new one (shared by concurrent callers)."""
        if self._report is not None and time.monotonic() - self._checked_at < self.interval:
            return self._report
        if self._running is None or self._running.done():
            self._running = asyncio.get_running_loop().create_task(self._check_all())
        return await asyncio.shield(self._running)

    async def _check_all(self) -> dict[str, Any]:
        checkable = [d for d in self.deployments if "*" not in d.model]
        probes = await asyncio.gather(*(self._check(d) for d in checkable))
        healthy = [p.entry() for p in probes if p.error is None]
        unhealthy = [p.entry() for p in probes if p.error is not None]
        report = {
            "healthy_endpoints": healthy,
            "unhealthy_endpoints": unhealthy,
            "healthy_count": len(healthy),
            "unhealthy_count": len(unhealthy),
            "not_checked": [d.id for d in self.deployments if "*" in d.model],
            "checked_at": time.time(),
        }
        self._report, self._checked_at = report, time.monotonic()
        return report

    async def _check(self, dep: Deployment) -> Probe:
        provider = self.providers.get(dep.api)
        if provider is None:
            return Probe(dep, f"no provider for {dep.api!r}")
        ctx = RequestContext(api="anthropic", route="/health", headers={})
        body = {"model": dep.model, "max_tokens": 1, "messages": PROBE}
        call = HubCall(Target(dep, dep.model), body, None, {})
        try:
            async with asyncio.timeout(self.timeout):
                reply = await provider.messages(ctx, call)
        except TimeoutError:
            return Probe(dep, f"no answer within {self.timeout:g}s")
        except GatewayError as e:
            return Probe(dep, f"{e.status} {e.message}")
        except Exception as e:  # a broken upstream must not break the report
            return Probe(dep, f"{type(e).__name__}: {e}")
        if reply.source is not None:
            reply.source.close()
        if reply.status >= 400:
            detail = ctx.error_message or (reply.body or b"")[:300].decode("utf-8", "replace")
            return Probe(dep, f"HTTP {reply.status}: {detail}")
        return Probe(dep, None)
