"""What the fake upstream's handlers share: the recorded state and small reply helpers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web


class FakeState:
    def __init__(self) -> None:
        self.script: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def next_reply(self, api: str, body: Any = None) -> dict[str, Any] | None:
        """The first queued reply meant for `api` ("anthropic" or "openai"; untagged fits both).

        A spec with a "match" ({"model", "has_tools", "last_role"}) only fits a request `body`
        with those traits (lets a test script the main turn of a client that also sends side
        requests, such as Claude Code).
        """
        for i, spec in enumerate(self.script):
            if spec.get("api") in (None, api) and _fits(spec.get("match"), body):
                return self.script.pop(i)
        return None

    async def record(self, request: web.Request) -> tuple[bytes, dict[str, Any]]:
        raw = await request.read()
        entry = {
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": raw.decode("utf-8", "replace"),
            "time": time.time(),
        }
        self.requests.append(entry)
        return raw, entry


STATE = web.AppKey("state", FakeState)


def _fits(match: Any, body: Any) -> bool:
    if not match:
        return True
    if not isinstance(body, dict):
        return False
    if "model" in match and body.get("model") != match["model"]:
        return False
    if "has_tools" in match and bool(body.get("tools")) != match["has_tools"]:
        return False
    messages = body.get("messages") or [{}]
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    return "last_role" not in match or last.get("role") == match["last_role"]


def json_response(payload: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload), status=status, headers=headers, content_type="application/json"
    )


async def sleep(seconds: float | None) -> None:
    if seconds:
        await asyncio.sleep(seconds)


RAW_KEYS = {"raw", "raw_chunks", "endless"}
ENDLESS_SECONDS = 8.0  # an "endless" stream stops by itself after this long (tests stay bounded)


async def send_raw(request: web.Request, spec: dict[str, Any]) -> web.StreamResponse:
    """A hostile reply from the spec's raw keys (shared by both protocol fakes):

    "raw": text, "raw_repeat": n      these bytes (n times over: giant lines), then the rest below
    "raw_chunks": [text, ...]         sent one by one, `chunk_delay` apart (an SSE cut mid-event)
    "endless": text                   sent over and over, `chunk_delay` apart, for ENDLESS_SECONDS
    "then": "eof" | "disconnect" | "hang"   how the reply ends (default eof; hang: until the client goes)
    "status", "content_type", "headers"     of the reply (defaults 200, application/json)
    """
    response = web.StreamResponse(status=spec.get("status", 200), headers=spec.get("headers"))
    response.content_type = spec.get("content_type", "application/json")
    await response.prepare(request)
    try:
        await _write_raw(response, spec)
        return await _end_raw(request, response, spec.get("then", "eof"))
    except (ConnectionResetError, asyncio.CancelledError, RuntimeError):
        return response


async def _write_raw(response: web.StreamResponse, spec: dict[str, Any]) -> None:
    if "raw" in spec:
        await response.write(spec["raw"].encode() * int(spec.get("raw_repeat", 1)))
    for chunk in spec.get("raw_chunks", ()):
        await sleep(spec.get("chunk_delay"))
        await response.write(chunk.encode())
    if "endless" in spec:
        stop = time.monotonic() + ENDLESS_SECONDS
        while time.monotonic() < stop:
            await response.write(spec["endless"].encode())
            await asyncio.sleep(spec.get("chunk_delay") or 0.01)


async def _end_raw(request: web.Request, response: web.StreamResponse, how: str) -> web.StreamResponse:
    if how == "disconnect":
        if request.transport is not None:
            request.transport.close()
        return response
    if how == "hang":
        await asyncio.sleep(ENDLESS_SECONDS)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response
