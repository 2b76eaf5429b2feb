"""OpenAI-compatible Chat Completions backend (OpenAI, vLLM, llama.cpp, Ollama, DeepSeek, ...).

`api_base` includes the version path, as the openai SDK's `base_url` does; `/chat/completions`
is appended. The body must already be in OpenAI format (see `parley.translate`).
"""

from __future__ import annotations

from parley.transport.http import HttpClient
from parley.core.stream import UpstreamCall, UpstreamReply

# Client headers never sent to an OpenAI-compatible server.
_DROP = frozenset({
    "x-api-key", "authorization", "host", "content-length", "connection", "keep-alive",
    "transfer-encoding", "te", "upgrade", "proxy-authorization", "accept-encoding", "cookie",
    "expect", "anthropic-version", "anthropic-beta",
})


def openai_forwardable_headers(headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in _DROP and not k.startswith("x-parley-")
            and not k.startswith("x-stainless-")}


class OpenAIProvider:
    api = "openai"

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        headers = dict(call.headers)
        headers["content-type"] = "application/json"
        if call.target.deployment.api_key:
            headers["authorization"] = "Bearer " + call.target.deployment.api_key
        return await self.http.send_call(call, headers)
