"""The reference: the least a Python proxy can do, on the same stack parley uses (aiohttp + uvloop).

    python bench/bare_forwarder.py --port P --upstream http://127.0.0.1:U [--stream-upstream URL]

Every POST is forwarded to `upstream` + path with the client's bytes and a pooled keep-alive client
session; `stream: true` bodies go to `stream-upstream` (if given) and the reply is piped chunk by chunk.
It parses the body once (as any router must, to read `model`/`stream`) and does nothing else: no
auth, no accounting, no headers beyond the protocol ones.
"""

from __future__ import annotations

import argparse

import aiohttp
import orjson
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)
STREAM_UPSTREAM = web.AppKey("stream_upstream", str)
PASS = ("content-type", "anthropic-version", "anthropic-beta")


async def forward(request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    stream = bool(orjson.loads(raw).get("stream"))
    base = request.app[STREAM_UPSTREAM] if stream else request.app[UPSTREAM]
    headers = {k: request.headers[k] for k in PASS if k in request.headers}
    headers["x-api-key"] = "sk-bench-upstream"
    async with request.app[SESSION].post(base + request.path_qs, data=raw, headers=headers) as up:
        if not stream:
            return web.Response(body=await up.read(), status=up.status, content_type=up.content_type)
        response = web.StreamResponse(status=up.status, headers={"content-type": up.content_type})
        await response.prepare(request)
        while chunk := await up.content.readany():
            await response.write(chunk)
        await response.write_eof()
        return response


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--stream-upstream")
    args = parser.parse_args()

    async def start(app: web.Application) -> None:
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60))

    async def stop(app: web.Application) -> None:
        await app[SESSION].close()

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[UPSTREAM] = args.upstream
    app[STREAM_UPSTREAM] = args.stream_upstream or args.upstream
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_get("/health", health)
    app.router.add_post("/{tail:.*}", forward)
    import uvloop

    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, backlog=4096)


if __name__ == "__main__":
    main()
