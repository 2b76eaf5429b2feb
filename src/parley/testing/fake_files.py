"""The Files API (beta) on the fake upstream: upload (multipart `file`), list, metadata, content,
delete, kept in memory."""

from __future__ import annotations

import datetime as dt
import secrets

from aiohttp import BodyPartReader, web

from parley.testing.fake_anthropic import error_body
from parley.testing.fake_state import STATE, json_response

FILES = web.AppKey("files", dict)


def add_routes(app: web.Application) -> None:
    app[FILES] = {}
    app.router.add_post("/v1/files", upload)
    app.router.add_get("/v1/files", list_files)
    app.router.add_get("/v1/files/{id}", metadata)
    app.router.add_get("/v1/files/{id}/content", content)
    app.router.add_delete("/v1/files/{id}", delete)


def _record(request: web.Request, size: int) -> dict:
    return {
        "method": request.method,
        "path": request.path,
        "query": request.query_string,
        "headers": {k.lower(): v for k, v in request.headers.items()},
        "body": f"<{size} bytes>",
    }


def _meta(item: dict) -> dict:
    return {
        k: item[k]
        for k in ("id", "type", "filename", "mime_type", "size_bytes", "created_at", "downloadable")
    }


async def upload(request: web.Request) -> web.Response:
    reader = await request.multipart()
    part = await reader.next()
    while part is not None and not (isinstance(part, BodyPartReader) and part.name == "file"):
        part = await reader.next()
    if part is None:
        return json_response(error_body("invalid_request_error", "file: Field required"), 400)
    data = await part.read(decode=False)
    request.app[STATE].requests.append(_record(request, len(data)))
    item = {
        "id": "file_fake" + secrets.token_hex(10),
        "type": "file",
        "filename": part.filename or "upload",
        "mime_type": part.headers.get("content-type", "application/octet-stream"),
        "size_bytes": len(data),
        "created_at": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        "downloadable": True,
        "data": bytes(data),
    }
    request.app[FILES][item["id"]] = item
    return json_response(_meta(item))


async def list_files(request: web.Request) -> web.Response:
    await request.app[STATE].record(request)
    data = [_meta(f) for f in reversed(list(request.app[FILES].values()))]
    return json_response(
        {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    )


def _find(request: web.Request) -> dict | None:
    return request.app[FILES].get(request.match_info["id"])


def _missing(request: web.Request) -> web.Response:
    return json_response(error_body("not_found_error", f"file {request.match_info['id']} not found"), 404)


async def metadata(request: web.Request) -> web.Response:
    await request.app[STATE].record(request)
    item = _find(request)
    return _missing(request) if item is None else json_response(_meta(item))


async def content(request: web.Request) -> web.Response:
    await request.app[STATE].record(request)
    item = _find(request)
    if item is None:
        return _missing(request)
    return web.Response(body=item["data"], content_type=item["mime_type"])


async def delete(request: web.Request) -> web.Response:
    await request.app[STATE].record(request)
    item = request.app[FILES].pop(request.match_info["id"], None)
    return _missing(request) if item is None else json_response({"id": item["id"], "type": "file_deleted"})
