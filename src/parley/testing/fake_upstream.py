"""A scripted fake model provider, run as a real server on loopback.

It speaks the Anthropic Messages API (and, via `fake_openai`, OpenAI Chat Completions) as the
published protocols describe, records every request it receives, and answers from a queue of
scripted replies (or a default echo). Control it over HTTP, so it works as a separate process:

    POST /_fake/script    a reply spec or a list of them, queued FIFO (see `fake_anthropic`)
    POST /_fake/reset     clear the queue and the record
    GET  /_fake/requests  everything received, oldest first
    GET  /_fake/events    stream lifecycle notes (e.g. {"stream_aborted": true})
"""

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


async def _script(request: web.Request) -> web.Response:
    spec = orjson.loads(await request.read())
    request.app[STATE].script.extend(spec if isinstance(spec, list) else [spec])
    return json_response({"queued": len(request.app[STATE].script)})


async def _reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.script.clear()
    state.requests.clear()
    state.events.clear()
    return json_response({"ok": True})


async def _requests(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].requests)


async def _events(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].events)


def build_app() -> web.Application:
    from parley.testing import fake_anthropic, fake_batches, fake_files

    app = web.Application(client_max_size=512 * 1024 * 1024)
    app[STATE] = FakeState()
    app.router.add_post("/_fake/script", _script)
    app.router.add_post("/_fake/reset", _reset)
    app.router.add_get("/_fake/requests", _requests)
    app.router.add_get("/_fake/events", _events)
    fake_anthropic.add_routes(app)
    fake_batches.add_routes(app)
    fake_files.add_routes(app)
    try:
        from parley.testing import fake_openai
    except ImportError:
        pass
    else:
        fake_openai.add_routes(app)
    return app


def serve_forever(host: str, port: int) -> None:
    print(f"fake upstream listening on http://{host}:{port}", flush=True)
    web.run_app(build_app(), host=host, port=port, print=None, access_log=None)


async def sleep(seconds: float | None) -> None:
    if seconds:
        await asyncio.sleep(seconds)
