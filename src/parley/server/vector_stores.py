"""OpenAI's vector-store and file routes (`/v1/vector_stores/...`, `/v1/files/...`) on parley's keys.

Any key may create stores and files; they belong to its team (or to the key), and only their owner
(and the master key) sees them. Errors use OpenAI's envelope, lists OpenAI's cursor pages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from parley.core.context import RequestContext
from parley.core.errors import GatewayError, invalid_request
from parley.gateway import Gateway
from parley.pipeline.body import parse_object
from parley.retrieval.chunking import parse_chunking
from parley.retrieval.service import VectorStores, file_json, owner_of, store_file_json
from parley.server.body import read_body

Handler = Callable[[Request, str], Awaitable[Any]]
MAX_RESULTS = 50


class VectorStoreRoutes:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.stores: VectorStores | None = gateway.vector_stores

    def routes(self) -> list[Route]:
        vs, f = "/v1/vector_stores", "/v1/files"
        return [
            Route(vs, self._wrap(self.create_store), methods=["POST"]),
            Route(vs, self._wrap(self.list_stores), methods=["GET"]),
            Route(vs + "/{vs}", self._wrap(self.get_store), methods=["GET"]),
            Route(vs + "/{vs}", self._wrap(self.update_store), methods=["POST"]),
            Route(vs + "/{vs}", self._wrap(self.delete_store), methods=["DELETE"]),
            Route(vs + "/{vs}/search", self._wrap(self.search), methods=["POST"]),
            Route(vs + "/{vs}/files", self._wrap(self.attach), methods=["POST"]),
            Route(vs + "/{vs}/files", self._wrap(self.list_store_files), methods=["GET"]),
            Route(vs + "/{vs}/files/{file}", self._wrap(self.get_store_file), methods=["GET"]),
            Route(vs + "/{vs}/files/{file}", self._wrap(self.detach), methods=["DELETE"]),
            Route(f, self._wrap(self.upload), methods=["POST"]),
            Route(f, self._wrap(self.list_files), methods=["GET"]),
            Route(f + "/{file}", self._wrap(self.get_file), methods=["GET"]),
            Route(f + "/{file}", self._wrap(self.delete_file), methods=["DELETE"]),
            Route(f + "/{file}/content", self._wrap(self.file_content), methods=["GET"]),
        ]

    def _wrap(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            ctx = RequestContext(api="openai", route=request.url.path, headers=request.headers)
            try:
                if self.stores is None:
                    raise GatewayError(
                        404,
                        "vector stores need a database: set general_settings.database_url",
                        "not_found_error",
                    )
                await self.gw.pipeline.auth.authenticate(ctx)
                result = await handler(request, owner_of(ctx.auth))
            except GatewayError as e:
                return Response(e.openai_body(), e.status, media_type="application/json")
            if isinstance(result, Response):
                return result
            return Response(orjson.dumps(result), media_type="application/json")

        return endpoint

    @property
    def vs(self) -> VectorStores:
        assert self.stores is not None
        return self.stores

    async def _json(self, request: Request) -> dict[str, Any]:
        raw = await read_body(request, self.gw.config.general.max_request_bytes)
        return parse_object(raw) if raw else {}

    # --- stores --------------------------------------------------------------------------------

    async def create_store(self, request: Request, owner: str) -> dict[str, Any]:
        body = await self._json(request)
        name, metadata = _name(body), metadata_of(body)
        chunking = parse_chunking(body.get("chunking_strategy"))
        ident = await self.vs.create_store(owner, name, metadata)
        for file_id in _strs(body, "file_ids"):
            await self.vs.attach(owner, ident, file_id, None, chunking)
        return await self.vs.store_json(owner, ident)

    async def list_stores(self, request: Request, owner: str) -> dict[str, Any]:
        ids = await self.vs.list_stores(owner)
        return await _page(request, ids, lambda i: self.vs.store_json(owner, i))

    async def get_store(self, request: Request, owner: str) -> dict[str, Any]:
        return await self.vs.store_json(owner, request.path_params["vs"])

    async def update_store(self, request: Request, owner: str) -> dict[str, Any]:
        body = await self._json(request)
        values: dict[str, Any] = {}
        if "name" in body:
            values["name"] = _name(body)
        if "metadata" in body:
            values["metadata"] = metadata_of(body)
        await self.vs.update_store(owner, request.path_params["vs"], values)
        return await self.vs.store_json(owner, request.path_params["vs"])

    async def delete_store(self, request: Request, owner: str) -> dict[str, Any]:
        ident = request.path_params["vs"]
        await self.vs.delete_store(owner, ident)
        return {"id": ident, "object": "vector_store.deleted", "deleted": True}

    async def search(self, request: Request, owner: str) -> dict[str, Any]:
        body = await self._json(request)
        query = body.get("query")
        queries = [query] if isinstance(query, str) else query
        if not isinstance(queries, list) or not queries or not all(isinstance(q, str) and q for q in queries):
            raise invalid_request("query: a non-empty string or list of strings", param="query")
        k = body.get("max_num_results", 10)
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_RESULTS:
            raise invalid_request(
                f"max_num_results: an integer from 1 to {MAX_RESULTS}", param="max_num_results"
            )
        ident = request.path_params["vs"]
        await self.vs.store_row(owner, ident)
        found = await self.vs.search([ident], "\n".join(queries), k)
        data = [
            {
                "file_id": hit.chunk.file_id,
                "filename": found.filenames.get(hit.chunk.file_id, ""),
                "score": round(max(0.0, hit.score), 6),
                "attributes": {},
                "content": [{"type": "text", "text": hit.chunk.text}],
            }
            for hit in found.hits
        ]
        return {
            "object": "vector_store.search_results.page",
            "search_query": queries,
            "data": data,
            "has_more": False,
            "next_page": None,
        }

    # --- files in stores -----------------------------------------------------------------------

    async def attach(self, request: Request, owner: str) -> dict[str, Any]:
        body = await self._json(request)
        file_id = body.get("file_id")
        if not isinstance(file_id, str) or not file_id:
            raise invalid_request("file_id: Field required", param="file_id")
        attributes = body.get("attributes")
        if attributes is not None and not isinstance(attributes, dict):
            raise invalid_request("attributes: must be an object", param="attributes")
        store = request.path_params["vs"]
        await self.vs.attach(owner, store, file_id, attributes, parse_chunking(body.get("chunking_strategy")))
        return store_file_json(await self.vs.store_file_row(owner, store, file_id))

    async def list_store_files(self, request: Request, owner: str) -> dict[str, Any]:
        rows = {r.file_id: r for r in await self.vs.store_files(owner, request.path_params["vs"])}
        wanted = request.query_params.get("filter")
        ids = [i for i, r in rows.items() if wanted in (None, r.status)]

        async def one(i: str) -> dict[str, Any]:
            return store_file_json(rows[i])

        return await _page(request, ids, one)

    async def get_store_file(self, request: Request, owner: str) -> dict[str, Any]:
        p = request.path_params
        return store_file_json(await self.vs.store_file_row(owner, p["vs"], p["file"]))

    async def detach(self, request: Request, owner: str) -> dict[str, Any]:
        p = request.path_params
        await self.vs.detach(owner, p["vs"], p["file"])
        return {"id": p["file"], "object": "vector_store.file.deleted", "deleted": True}

    # --- files ---------------------------------------------------------------------------------

    async def upload(self, request: Request, owner: str) -> dict[str, Any]:
        limit = self.gw.config.general.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise GatewayError(413, f"file over the limit of {limit} bytes", "request_too_large")
        try:
            form = await request.form(max_files=1, max_fields=10, max_part_size=limit)
        except Exception as e:
            raise invalid_request(f"expected multipart/form-data with a file: {e}") from None
        upload, purpose = form.get("file"), form.get("purpose")
        if upload is None or isinstance(upload, str):
            raise invalid_request("file: Field required", param="file")
        if not isinstance(purpose, str) or not purpose:
            raise invalid_request("purpose: Field required", param="purpose")
        content = await upload.read()
        return await self.vs.upload(owner, upload.filename or "upload", purpose, content)

    async def list_files(self, request: Request, owner: str) -> dict[str, Any]:
        files = {f["id"]: f for f in await self.vs.list_files(owner)}

        async def one(i: str) -> dict[str, Any]:
            return files[i]

        return await _page(request, list(files), one)

    async def get_file(self, request: Request, owner: str) -> dict[str, Any]:
        row = await self.vs.file_row(owner, request.path_params["file"])
        return file_json(row._mapping)

    async def delete_file(self, request: Request, owner: str) -> dict[str, Any]:
        ident = request.path_params["file"]
        await self.vs.delete_file(owner, ident)
        return {"id": ident, "object": "file", "deleted": True}

    async def file_content(self, request: Request, owner: str) -> Response:
        row = await self.vs.file_row(owner, request.path_params["file"], content=True)
        return Response(bytes(row.content), media_type="application/octet-stream")


async def _page(
    request: Request, ids: list[str], render: Callable[[str], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """OpenAI's cursor page over `ids` (newest first): limit, after, before, order."""
    q = request.query_params
    try:
        limit = int(q.get("limit", "20"))
    except ValueError:
        raise invalid_request("limit: an integer from 1 to 100", param="limit") from None
    if not 1 <= limit <= 100:
        raise invalid_request("limit: an integer from 1 to 100", param="limit")
    if q.get("order") == "asc":
        ids = ids[::-1]
    if q.get("after") in ids:
        ids = ids[ids.index(q["after"]) + 1 :]
    if q.get("before") in ids:
        ids = ids[: ids.index(q["before"])][-limit:]
    chosen = ids[:limit]
    data = [await render(i) for i in chosen]
    return {
        "object": "list",
        "data": data,
        "first_id": chosen[0] if chosen else None,
        "last_id": chosen[-1] if chosen else None,
        "has_more": len(ids) > limit,
    }


def _name(body: dict[str, Any]) -> str | None:
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 255):
        raise invalid_request("name: a string of at most 255 characters", param="name")
    return name


def metadata_of(body: dict[str, Any]) -> dict[str, Any] | None:
    metadata = body.get("metadata")
    if metadata is None:
        return None
    if (
        not isinstance(metadata, dict)
        or len(metadata) > 16
        or not all(isinstance(v, str) for v in metadata.values())
    ):
        raise invalid_request("metadata: at most 16 string values", param="metadata")
    return metadata


def _strs(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise invalid_request(f"{name}: a list of ids", param=name)
    return value
