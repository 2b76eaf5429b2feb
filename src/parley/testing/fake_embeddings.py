"""OpenAI's embeddings API on the fake upstream: `POST /v1/embeddings`.

Checks what OpenAI checks (a Bearer key, `model`, `input` as a string, strings, or token lists,
`encoding_format` float or base64, `dimensions` a positive integer), answers with deterministic
unit vectors (a hash of each input: equal texts, equal vectors) and usage, and records the request.
A script spec with `"api": "embeddings"` may set `status` and `error` to fail the next call.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Any

import orjson
from aiohttp import web

from parley.testing.fake_state import STATE, json_response

DIMENSIONS = 8


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/embeddings", embeddings)


def _error(message: str, param: str | None = None, type_: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": None}}


def _inputs(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) for v in value):
            return [" ".join(map(str, value))]
        if all(isinstance(v, str) for v in value):
            return list(value)
        if all(isinstance(v, list) and all(isinstance(i, int) for i in v) for v in value):
            return [" ".join(map(str, v)) for v in value]
    return None


def vector(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest() * (dimensions // 32 + 1)
    raw = [b - 127.5 for b in digest[:dimensions]]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [x / norm for x in raw]


async def embeddings(request: web.Request) -> web.Response:
    state = request.app[STATE]
    raw, _ = await state.record(request)
    if not request.headers.get("authorization", "").startswith("Bearer "):
        return json_response(_error("You didn't provide an API key."), 401)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json_response(_error("We could not parse the JSON body of your request."), 400)
    spec = state.next_reply("embeddings", body) or {}
    if spec.get("status", 200) >= 400:
        error = spec.get("error") or {}
        return json_response(
            _error(error.get("message", "scripted error"), type_=error.get("type", "server_error")),
            spec["status"],
        )
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return json_response(_error("you must provide a model parameter", "model"), 400)
    texts = _inputs(body.get("input"))
    if texts is None:
        return json_response(_error("'input' is a required property", "input"), 400)
    fmt = body.get("encoding_format", "float")
    dims = body.get("dimensions", DIMENSIONS)
    if fmt not in ("float", "base64") or not isinstance(dims, int) or dims < 1:
        return json_response(_error("invalid encoding_format or dimensions", "encoding_format"), 400)
    data = []
    for i, text in enumerate(texts):
        vec = vector(text, dims)
        out: Any = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode() if fmt == "base64" else vec
        data.append({"object": "embedding", "index": i, "embedding": out})
    tokens = sum(len(t.split()) for t in texts)
    return json_response(
        {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )
