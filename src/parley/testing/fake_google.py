"""The Google side of the fake upstream: an OAuth token endpoint, Vertex AI and the Gemini API.

    POST /token                                    OAuth 2 token endpoint (service-account JWT
                                                   grant, refresh-token grant); issues bearer tokens
    POST /{v1,v1beta1}/projects/P/locations/L/publishers/anthropic/models/M:rawPredict
         ... M:streamRawPredict, count-tokens:rawPredict      Claude on Vertex (bearer token)
    POST /{v1,v1beta1}/projects/P/locations/L/publishers/google/models/M:generateContent
         ... M:streamGenerateContent?alt=sse                   Gemini on Vertex (bearer token)
    POST /{v1beta,v1}/models/M:generateContent, :streamGenerateContent?alt=sse
                                                   the Gemini API (`x-goog-api-key` or `?key=`)
    POST /_fake/google  {"token_lifetime": s}      set how long new tokens live
    GET  /_fake/google                             {"tokens_issued": n, "token_grants": [...]}

Vertex accepts only tokens this server issued and that have not expired (401 UNAUTHENTICATED in
Google's envelope otherwise). Gemini API keys must look like keys (`AIza...`): others get AI
Studio's 400 API_KEY_INVALID, none its 403. Gemini bodies are checked as the API checks them (see
`fake_gemini`); Claude bodies must carry an `anthropic_version` Vertex knows and no `model`.
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson
from aiohttp import web

from parley.core.tokens import count_request_tokens
from parley.testing import fake_anthropic, fake_gemini
from parley.testing.fake_gemini import google_error
from parley.testing.fake_state import RAW_KEYS, STATE, json_response, send_raw, sleep

VERTEX_VERSION = "vertex-2023-10-16"
VERTEX_VERSIONS = (VERTEX_VERSION, "2026-10-21")  # the second: what AnthropicVertex 2.x sends
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # the audience google-auth signs for


@dataclass
class GoogleState:
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (epoch seconds)
    token_lifetime: float = 3600.0
    grants: list[dict[str, Any]] = field(default_factory=list)


GOOGLE = web.AppKey("google", GoogleState)


def add_routes(app: web.Application) -> None:
    app[GOOGLE] = GoogleState()
    app[fake_gemini.SIGNATURES] = set()
    app.router.add_post("/token", token)
    app.router.add_post("/_fake/google", control)
    app.router.add_get("/_fake/google", status)
    app.router.add_post(
        "/{version}/projects/{project}/locations/{location}/publishers/{publisher}/models/{action}", vertex
    )
    app.router.add_post("/{version}/models/{action}", gemini_api)


# ----------------------------------------------------------------------------- OAuth


async def token(request: web.Request) -> web.Response:
    google = request.app[GOOGLE]
    form = {k: v[0] for k, v in parse_qs((await request.read()).decode()).items()}
    grant = form.get("grant_type")
    if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
        problem = _check_assertion(form.get("assertion", ""), str(request.url))
    elif grant == "refresh_token":
        problem = None if form.get("refresh_token") and form.get("client_id") else "missing refresh_token"
    else:
        problem = f"unsupported grant_type {grant!r}"
    google.grants.append({"grant_type": grant, "ok": problem is None, "time": time.time()})
    if problem is not None:
        return json_response({"error": "invalid_grant", "error_description": problem}, 400)
    access = "ya29.fake-" + secrets.token_urlsafe(24)
    google.tokens[access] = time.time() + google.token_lifetime
    return json_response(
        {"access_token": access, "expires_in": int(google.token_lifetime), "token_type": "Bearer"}
    )


def _check_assertion(assertion: str, url: str) -> str | None:
    """What Google checks of a service account's JWT that a client can get wrong (not the key)."""
    pieces = assertion.split(".")
    if len(pieces) != 3:
        return "Invalid JWT: not a signed JWT"
    try:
        header = orjson.loads(base64.urlsafe_b64decode(pieces[0] + "=" * (-len(pieces[0]) % 4)))
        claims = orjson.loads(base64.urlsafe_b64decode(pieces[1] + "=" * (-len(pieces[1]) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return "Invalid JWT: undecodable"
    if header.get("alg") != "RS256":
        return "Invalid JWT: alg must be RS256"
    if claims.get("aud") not in (url, GOOGLE_TOKEN_URI):
        return f"Invalid JWT audience {claims.get('aud')!r}"
    if SCOPE not in str(claims.get("scope", "")).split():
        return "Invalid JWT: scope does not include cloud-platform"
    if not claims.get("iss") or not isinstance(claims.get("exp"), int) or claims["exp"] < time.time():
        return "Invalid JWT Signature or expired"
    return None


async def control(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read() or b"{}")
    google = request.app[GOOGLE]
    if "token_lifetime" in body:
        google.token_lifetime = float(body["token_lifetime"])
    return json_response({"ok": True})


async def status(request: web.Request) -> web.Response:
    google = request.app[GOOGLE]
    return json_response({"tokens_issued": len(google.tokens), "token_grants": google.grants})


def _unauthenticated(request: web.Request) -> web.Response | None:
    auth = request.headers.get("authorization", "")
    expiry = request.app[GOOGLE].tokens.get(auth.removeprefix("Bearer "))
    if auth.startswith("Bearer ") and expiry is not None and expiry > time.time():
        return None
    return google_error(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
        "or other valid authentication credential.",
        "ACCESS_TOKEN_TYPE_UNSUPPORTED" if not auth else "ACCESS_TOKEN_EXPIRED",
    )


# ----------------------------------------------------------------------------- Vertex AI


async def vertex(request: web.Request) -> web.StreamResponse:
    raw, _ = await request.app[STATE].record(request)
    info = request.match_info
    if info["version"] not in ("v1", "v1beta1"):
        return google_error(404, "NOT_FOUND", "The requested URL was not found on this server.")
    denied = _unauthenticated(request)
    if denied is not None:
        return denied
    model, _, method = info["action"].partition(":")
    if info["publisher"] == "google":
        if method not in ("generateContent", "streamGenerateContent"):
            return google_error(404, "NOT_FOUND", f"method {method!r} not found")
        return await fake_gemini.generate(request, raw, model, method == "streamGenerateContent")
    if info["publisher"] != "anthropic" or (method != "rawPredict" and method != "streamRawPredict"):
        return google_error(404, "NOT_FOUND", f"Publisher model {info['action']!r} was not found")
    return await _claude(request, raw, model, method == "streamRawPredict")


async def _claude(request: web.Request, raw: bytes, model: str, stream: bool) -> web.StreamResponse:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
    if not isinstance(body, dict):
        return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
    if model == "count-tokens":
        if body.get("anthropic_version") not in VERTEX_VERSIONS or not body.get("model"):
            return _anthropic_error("anthropic_version and model: required for count-tokens")
        return json_response({"input_tokens": count_request_tokens(body)})
    if body.get("anthropic_version") not in VERTEX_VERSIONS:
        return _anthropic_error(f"anthropic_version: Input should be '{VERTEX_VERSION}'")
    if "model" in body:
        return _anthropic_error("model: Extra inputs are not permitted")
    if bool(body.get("stream")) != stream:
        return _anthropic_error("stream: must match the method (rawPredict or streamRawPredict)")
    body["model"] = model
    state = request.app[STATE]
    spec = state.next_reply("anthropic", body) or {}
    await sleep(spec.get("delay"))
    if RAW_KEYS & spec.keys():
        return await send_raw(request, spec)
    if spec.get("status", 200) >= 400:
        return _scripted_error(spec)
    message = fake_anthropic.build_message(body, spec)
    if not stream:
        return json_response(message, headers=spec.get("headers"))
    return await fake_anthropic.stream_message(request, message, spec)


def _scripted_error(spec: dict[str, Any]) -> web.Response:
    """`google_error: {"status": WORD, "message"}` answers from Vertex's front end; else Anthropic's."""
    code = spec["status"]
    if "google_error" in spec:
        err = spec["google_error"]
        return google_error(
            code, err.get("status", "UNKNOWN"), err.get("message", "scripted"), err.get("reason")
        )
    err = spec.get("error") or {}
    kind = err.get("type", fake_anthropic.ERROR_TYPES.get(code, "api_error"))
    return json_response(fake_anthropic.error_body(kind, err.get("message", "scripted error")), code)


def _anthropic_error(message: str) -> web.Response:
    return json_response(fake_anthropic.error_body("invalid_request_error", message), 400)


# ----------------------------------------------------------------------------- Gemini API


async def gemini_api(request: web.Request) -> web.StreamResponse:
    raw, _ = await request.app[STATE].record(request)
    version = request.match_info["version"]
    model, _, method = request.match_info["action"].partition(":")
    if version not in ("v1beta", "v1") or method not in ("generateContent", "streamGenerateContent"):
        return google_error(404, "NOT_FOUND", "The requested URL was not found on this server.")
    key = request.headers.get("x-goog-api-key") or request.query.get("key")
    if not key:
        return google_error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
        )
    if not key.startswith("AIza"):
        return google_error(
            400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", "API_KEY_INVALID"
        )
    return await fake_gemini.generate(request, raw, model, method == "streamGenerateContent")


def service_account_info(token_uri: str, project: str = "fake-project") -> dict[str, Any]:
    """A service-account key file's contents with a fresh RSA key, whose token_uri is this fake's."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": project,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": f"parley-test@{project}.iam.gserviceaccount.com",
        "client_id": str(secrets.randbelow(10**20)),
        "token_uri": token_uri,
    }
