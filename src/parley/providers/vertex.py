"""Google Vertex AI (`vertex_ai/...`): Claude through rawPredict / streamRawPredict, Gemini through
generateContent. Both authenticate with OAuth tokens from `google_auth.TokenSource`.

Claude: the Anthropic body with `model` moved into the URL and `anthropic_version:
vertex-2023-10-16`, the reply Anthropic's own (JSON or SSE, relayed with usage read on the side).
count_tokens goes to `count-tokens:rawPredict`. Errors from Vertex's front end arrive in Google's
envelope and are translated; Anthropic's own pass through.

Params (LiteLLM's names): `vertex_project`, `vertex_location` (default us-central1; `global`,
`us`, `eu` as AnthropicVertex spells them), `vertex_credentials`, `api_version` (default v1),
`api_base` (instead of the regional endpoint).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from parley.config import ConfigError
from parley.core.context import RequestContext
from parley.core.deployment import Deployment
from parley.core.errors import GatewayError
from parley.core.stream import UpstreamReply
from parley.core.tasks import Tasks
from parley.providers.anthropic import forwardable_headers, observe_reply
from parley.providers.base import HubCall
from parley.providers.gemini import generate, google_error, local_count
from parley.providers.google_auth import TokenSource, load_credentials, project_of
from parley.transport.http import HttpClient

VERTEX_VERSION = "vertex-2023-10-16"
DEFAULT_LOCATION = "us-central1"
BACKEND = "Vertex AI"


def endpoint_for(location: str) -> str:
    if location == "global":
        return "https://aiplatform.googleapis.com"
    if location in ("us", "eu"):
        return f"https://aiplatform.{location}.rep.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


@dataclass(frozen=True)
class VertexSite:
    """Where one deployment's calls go and how they authenticate."""

    base: str  # scheme and host (api_base, or the location's endpoint)
    version: str
    project: str | None  # None: the ADC project, found with the first token
    location: str
    tokens: TokenSource

    def model_url(self, project: str, publisher: str, model: str) -> str:
        return (
            f"{self.base}/{self.version}/projects/{project}/locations/{self.location}"
            f"/publishers/{publisher}/models/{model}"
        )


def site_from(dep: Deployment) -> VertexSite:
    """Read a deployment's Vertex params (credentials are loaded now: a bad file fails startup)."""
    where = f"model_list entry {dep.model_name!r}: params"
    params = dep.params
    location = params.get("vertex_location") or DEFAULT_LOCATION
    if not isinstance(location, str):
        raise ConfigError(f"{where}.vertex_location: must be a string")
    credentials = load_credentials(params.get("vertex_credentials"), where)
    project = params.get("vertex_project") or project_of(credentials, params.get("vertex_credentials"))
    if credentials is not None and not project:
        raise ConfigError(f"{where}.vertex_project: required (the credentials name no project)")
    return VertexSite(
        base=dep.api_base or endpoint_for(location),
        version=str(params.get("api_version") or "v1"),
        project=str(project) if project else None,
        location=location,
        tokens=TokenSource(credentials, BACKEND),
    )


class VertexProvider:
    api = "vertex"

    def __init__(self, http: HttpClient) -> None:
        self.http = http
        self._sites: dict[str, VertexSite] = {}

    def check(self, deployments: list[Deployment], tasks: Tasks) -> None:
        """Read every Vertex deployment's params now; fetch the first tokens in the background at
        startup (ADC may probe the metadata server: startup does not wait for it)."""
        sources = []
        for dep in deployments:
            if dep.api == self.api:
                site = self._sites[dep.id] = site_from(dep)
                sources.append(site.tokens)

        async def warm() -> None:
            for source in sources:
                tasks.spawn(source.warm())

        if sources:
            tasks.on_startup(warm)

    def site(self, dep: Deployment) -> VertexSite:
        site = self._sites.get(dep.id)
        if site is None:
            site = self._sites[dep.id] = site_from(dep)
        return site

    async def messages(self, ctx: RequestContext, call: HubCall) -> UpstreamReply:
        site = self.site(call.target.deployment)
        token = await site.tokens.token()
        project = site.project or site.tokens.adc_project
        if not project:
            raise GatewayError(
                400, f"{BACKEND}: no project: set params.vertex_project", "invalid_request_error"
            )
        auth = {"authorization": "Bearer " + token}
        model = call.target.upstream_model
        if model.startswith("claude"):
            return await self._claude(ctx, call, site.model_url(project, "anthropic", model), auth)
        if call.count_tokens:
            return local_count(call)
        return await generate(self.http, ctx, call, site.model_url(project, "google", model), auth, BACKEND)

    async def _claude(
        self, ctx: RequestContext, call: HubCall, model_url: str, auth: dict[str, str]
    ) -> UpstreamReply:
        dep = call.target.deployment
        body = dict(call.body)
        if call.count_tokens:
            url = model_url.rpartition("/")[0] + "/count-tokens:rawPredict"
            body["model"] = call.target.upstream_model
        else:
            url = model_url + (":streamRawPredict" if call.stream else ":rawPredict")
            body.pop("model", None)
        body.setdefault("anthropic_version", VERTEX_VERSION)
        headers = forwardable_headers(call.headers)
        headers.update({"content-type": "application/json", **auth, **dep.extra_headers})
        reply = await self.http.send(
            "POST",
            url,
            headers,
            orjson.dumps(body),
            dep.timeout,
            call.stream,
            dep.params.get("connect_timeout"),
        )
        if reply.status >= 400 and _google_envelope(reply.body):
            return google_error(ctx, reply, BACKEND)
        return observe_reply(ctx, reply)


def _google_envelope(body: bytes | None) -> bool:
    """A Google error (`{"error": {"code": …}}`), not Anthropic's (`{"type": "error", …}`)."""
    try:
        data = orjson.loads(body or b"")
    except orjson.JSONDecodeError:
        return False
    if isinstance(data, list) and data:
        data = data[0]
    return isinstance(data, dict) and data.get("type") != "error" and isinstance(data.get("error"), dict)
