"""The hooks a policy can attach at, in the order the gateway calls them.

1. `Authenticator.authenticate(ctx)` before the body is parsed; raises GatewayError(401).
2. `Policy.before_call(ctx, body)` after parsing and routing, before the provider is called; may
   edit `body` (then set `ctx.body_changed`) or raise GatewayError to refuse the request.
3. `Policy.after_call(ctx)` exactly once when the reply is over (sent, failed or abandoned). It is
   synchronous and must not block: queue I/O for a background writer.
"""

from __future__ import annotations

import hmac
from typing import Any, Mapping

from parley.core.context import RequestContext
from parley.core.errors import GatewayError


def client_key(headers: Mapping[str, str]) -> str | None:
    """The credential a client presented: `x-api-key`, else `Authorization: Bearer …`."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    auth = headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


class Authenticator:
    """Checks the master key when one is configured; open access otherwise."""

    def __init__(self, master_key: str | None) -> None:
        self.master_key = master_key

    @property
    def enabled(self) -> bool:
        return self.master_key is not None

    async def authenticate(self, ctx: RequestContext) -> None:
        ctx.key = client_key(ctx.headers)
        if self.master_key is None:
            return
        if ctx.key is None:
            raise GatewayError(401, "missing API key: send x-api-key or Authorization: Bearer",
                               "authentication_error")
        if not hmac.compare_digest(ctx.key.encode(), self.master_key.encode()):
            raise GatewayError(401, "invalid x-api-key", "authentication_error")
        ctx.auth = "master"


class Policy:
    """Base class: override the hooks you need."""

    async def before_call(self, ctx: RequestContext, body: dict[str, Any] | None) -> None:
        return None

    def after_call(self, ctx: RequestContext) -> None:
        return None
