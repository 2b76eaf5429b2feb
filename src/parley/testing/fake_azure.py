"""The Azure OpenAI side of the fake upstream.

    POST /openai/deployments/{deployment}/chat/completions?api-version=YYYY-MM-DD[-preview]
    POST /openai/v1/chat/completions               (the v1 API: no api-version, model in the body)

As Azure does: the key comes in the `api-key` header (or an Entra ID `Authorization: Bearer`
token); a missing or wrong key is a 401 in Azure's envelope, a deployment URL without an
api-version a 404 "Resource not found". Keys accepted: any starting with `azure-` (tokens: any
starting with `eyJ`, a JWT's opening). Bodies are checked and answered by `fake_openai` (the same
reply specs), plus Azure's content-filter annotations: `prompt_filter_results` on the reply (on a
stream, in a first chunk with no choices) and `content_filter_results` on each choice.
"""

from __future__ import annotations

import re

from aiohttp import web

from parley.testing import fake_openai
from parley.testing.fake_state import STATE, json_response

_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
    "key for an active subscription and use a correct regional API endpoint for your resource."
)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", deployment_chat)
    app.router.add_post("/openai/v1/chat/completions", v1_chat)


def _denied(request: web.Request) -> web.Response | None:
    key = request.headers.get("api-key", "")
    bearer = request.headers.get("authorization", "")
    if key.startswith("azure-") or bearer.startswith(("Bearer eyJ", "Bearer azure-")):
        return None
    return json_response({"error": {"code": "401", "message": _DENIED}}, 401)


async def deployment_chat(request: web.Request) -> web.StreamResponse:
    raw, _ = await request.app[STATE].record(request)
    version = request.query.get("api-version")
    if not version:
        return json_response({"error": {"code": "404", "message": "Resource not found"}}, 404)
    if not _VERSION.match(version):
        return json_response(
            {"error": {"code": "BadRequest", "message": f"API version not supported: {version}"}}, 400
        )
    return _denied(request) or await fake_openai.answer(request, raw, request.match_info["deployment"])


async def v1_chat(request: web.Request) -> web.StreamResponse:
    raw, _ = await request.app[STATE].record(request)
    return _denied(request) or await fake_openai.answer(request, raw, "")
