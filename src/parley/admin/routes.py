"""The admin routes and their OpenAPI description (`GET /openapi.json`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from parley.admin import keys, spend, subjects, usage
from parley.admin.common import Endpoint, JSONBytes, wrap
from parley.admin.fields import OPENAPI_TYPES
from parley.core.version import __version__
from parley.spend.service import StoreService

ENDPOINTS: list[Endpoint] = keys.ENDPOINTS + subjects.ENDPOINTS + spend.ENDPOINTS + usage.ENDPOINTS

_ERROR = {
    "description": "Anthropic-style error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": ["error"]},
                    "error": {
                        "type": "object",
                        "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
                    },
                    "request_id": {"type": "string"},
                },
            }
        }
    },
}


# 403: no master key configured; 413: body over the admin limit; 503: the database is unavailable
ERROR_CODES = ("400", "401", "403", "404", "413", "503")


def openapi() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for ep in ENDPOINTS:
        op: dict[str, Any] = {
            "summary": ep.summary,
            "tags": [ep.path.split("/")[1]],
            "security": [{"bearer": []}, {"x-api-key": []}],
            "responses": {"200": {"description": "OK"}, **{code: _ERROR for code in ERROR_CODES}},
        }
        params = [
            {"name": q, "in": "query", "required": False, "schema": {"type": "string"}} for q in ep.query
        ]
        if "{key}" in ep.path:
            params.append({"name": "key", "in": "path", "required": True, "schema": {"type": "string"}})
        if params:
            op["parameters"] = params
        if ep.method == "POST":
            op["requestBody"] = {
                "required": bool(ep.required),
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": list(ep.required),
                            "properties": {name: OPENAPI_TYPES[kind] for name, kind in ep.body.items()},
                        }
                    }
                },
            }
        paths.setdefault(ep.path, {})[ep.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "parley admin API",
            "version": __version__,
            "description": "Virtual keys, users, teams, customers and spend. Every call "
            "needs the master key (x-api-key or Authorization: Bearer).",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            }
        },
        "paths": paths,
    }


def admin_routes(service: StoreService) -> list[Route]:
    routes = [Route(ep.path, wrap(service, ep), methods=[ep.method]) for ep in ENDPOINTS]
    document = openapi()

    async def serve_openapi(request: Request) -> Response:
        return JSONBytes(document)

    routes.append(Route("/openapi.json", serve_openapi, methods=["GET"]))
    return routes
