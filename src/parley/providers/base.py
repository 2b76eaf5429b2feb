"""The one trait every backend implements: Anthropic Messages (the hub format) in and out.

A provider translates the hub request into its wire protocol, sends it, and returns the reply in
the Anthropic shape (JSON, SSE stream, or error envelope), recording usage and errors on the
request context. A new backend is one module here plus its translators in `parley.translate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from parley.core.context import RequestContext
from parley.core.deployment import Target
from parley.core.stream import UpstreamReply


@dataclass(slots=True)
class HubCall:
    """One Messages (or count_tokens) request for one target, in the hub (Anthropic) shape."""

    target: Target
    body: dict[str, Any]
    raw: bytes | None  # the client's exact bytes when `body` is still what it sent, else None
    headers: Mapping[str, str]  # the client's headers (the provider picks what to forward)
    count_tokens: bool = False
    query: str = ""

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream")) and not self.count_tokens

    @property
    def path(self) -> str:
        return "/v1/messages/count_tokens" if self.count_tokens else "/v1/messages"


class Provider(Protocol):
    """A backend. `api` names the wire protocol it speaks upstream."""

    api: str

    async def messages(self, ctx: RequestContext, call: HubCall) -> UpstreamReply: ...
