"""Azure OpenAI (`azure/<deployment>`): the OpenAI provider with Azure's URLs and credentials.

Everything else (the hub translation, Chat Completions clients' bytes forwarded, usage, errors,
content filtering as `finish_reason: content_filter` -> `refusal`) is `OpenAIProvider`'s.

    api_base      https://<resource>.openai.azure.com (required)
    api_version   an `api-version` such as 2024-10-21 (default): deployment URLs
                  `/openai/deployments/<model>/chat/completions?api-version=...`;
                  `v1` (or an api_base ending in /openai/v1): the v1 API, `/openai/v1/chat/completions`
    api_key       sent as the `api-key` header
    azure_ad_token  a Microsoft Entra ID token, sent as `Authorization: Bearer` (instead of api_key)
"""

from __future__ import annotations

from urllib.parse import quote

from parley.config import ConfigError
from parley.core.deployment import Deployment
from parley.core.stream import UpstreamCall, UpstreamReply
from parley.providers.openai import OpenAIProvider

DEFAULT_API_VERSION = "2024-10-21"
V1_VERSIONS = frozenset({"v1", "latest", "preview"})


def azure_route(dep: Deployment, model: str) -> tuple[str, str]:
    """(path below api_base, query) of the chat completions call for one Azure deployment."""
    base = dep.api_base or ""
    version = str(dep.params.get("api_version") or DEFAULT_API_VERSION)
    if base.endswith("/openai/v1"):
        return "/chat/completions", ""
    if version in V1_VERSIONS:
        return "/openai/v1/chat/completions", ("" if version == "v1" else f"api-version={version}")
    return f"/openai/deployments/{quote(model, safe='')}/chat/completions", f"api-version={version}"


class AzureOpenAIProvider(OpenAIProvider):
    api = "azure"

    def check(self, deployments: list[Deployment]) -> None:
        super().check(deployments)
        for dep in deployments:
            if dep.api == self.api and not (dep.api_key or dep.params.get("azure_ad_token")):
                raise ConfigError(
                    f"model_list entry {dep.model_name!r}: params.api_key or params.azure_ad_token: "
                    "required for azure (e.g. api_key: os.environ/AZURE_API_KEY)"
                )

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        dep = call.target.deployment
        call.path, query = azure_route(dep, call.target.upstream_model)
        call.query = "&".join(q for q in (query, call.query) if q)
        headers = dict(call.headers)
        headers["content-type"] = "application/json"
        token = dep.params.get("azure_ad_token")
        if token:
            headers["authorization"] = "Bearer " + str(token)
        else:
            headers["api-key"] = dep.api_key or ""
        return await self.http.send_call(call, headers)
