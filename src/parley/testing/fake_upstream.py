"""A scripted fake model provider, run as a real server on loopback.

It speaks the Anthropic Messages API (and, via `fake_openai`, OpenAI Chat Completions; via
`fake_bedrock`, the Amazon Bedrock runtime; via `fake_azure`, Azure OpenAI; via `fake_google`, an
OAuth token endpoint, Vertex AI and the Gemini API) as the published protocols describe, records
every request it receives, and answers from a queue of scripted replies (or a default echo).
Control it over HTTP, so it works as a separate process:

    POST /_fake/script    a reply spec or a list of them, queued FIFO (see `fake_anthropic`)
    POST /_fake/reset     clear the queue and the record
    GET  /_fake/requests  everything received, oldest first
    GET  /_fake/events    stream lifecycle notes (e.g. {"stream_aborted": true})
"""

from __future__ import annotations

import orjson
from aiohttp import web

from parley.testing.fake_state import STATE, FakeState, json_response


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
    from parley.testing import fake_anthropic, fake_batches, fake_bedrock, fake_embeddings, fake_files

    app = web.Application(client_max_size=512 * 1024 * 1024)
    app[STATE] = FakeState()
    app.router.add_post("/_fake/script", _script)
    app.router.add_post("/_fake/reset", _reset)
    app.router.add_get("/_fake/requests", _requests)
    app.router.add_get("/_fake/events", _events)
    fake_anthropic.add_routes(app)
    fake_batches.add_routes(app)
    fake_files.add_routes(app)
    fake_bedrock.add_routes(app)
    fake_embeddings.add_routes(app)
    try:
        from parley.testing import fake_openai
    except ImportError:
        pass
    else:
        fake_openai.add_routes(app)
    from parley.testing import fake_azure, fake_google

    fake_azure.add_routes(app)
    fake_google.add_routes(app)
    return app


def serve_forever(host: str, port: int) -> None:
    print(f"fake upstream listening on http://{host}:{port}", flush=True)
    web.run_app(build_app(), host=host, port=port, print=None, access_log=None)
