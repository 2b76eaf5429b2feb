"""Anthropic Messages API backend: bytes forwarded, headers and betas verbatim, key swapped."""

from __future__ import annotations

from parley.transport.http import HttpClient
from parley.core.stream import UpstreamCall, UpstreamReply

DEFAULT_VERSION = "2023-06-01"

# Client headers never sent upstream: credentials, our own, and those aiohttp sets itself.
_DROP = frozenset({
    "x-api-key", "authorization", "host", "content-length", "connection", "keep-alive",
    "transfer-encoding", "te", "upgrade", "proxy-authorization", "accept-encoding", "cookie",
    "expect",
})


def forwardable_headers(headers) -> dict[str, str]:
    """The client's headers minus credentials, hop-by-hop and parley's own `x-parley-*`."""
    out: dict[str, str] = {}
    for k, v in headers.items():
        if k in _DROP or k.startswith("x-parley-"):
            continue
        out[k] = out[k] + "," + v if k in out else v  # a repeated header (anthropic-beta) joins
    return out


class AnthropicProvider:
    api = "anthropic"

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        headers = dict(call.headers)
        headers.setdefault("anthropic-version", DEFAULT_VERSION)
        headers.setdefault("content-type", "application/json")
        if call.target.deployment.api_key:
            headers["x-api-key"] = call.target.deployment.api_key
        return await self.http.send_call(call, headers)
