"""A streaming upstream for the bench: N native Anthropic SSE events at a chosen rate.

    python bench/stream_upstream.py --port P [--events 10] [--interval 0.5]

POST /v1/messages streams `message_start`, then `events` text deltas `interval` seconds apart, then the
closing events. Query parameters `events` and `interval` override the defaults per request. Each
delta's text is `@<unix time it was written>` so a client can measure per-chunk delay end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from aiohttp import web

from bodies import ANTHROPIC_MESSAGE, sse

EVENTS = web.AppKey("events", int)
INTERVAL = web.AppKey("interval", float)


async def messages(request: web.Request) -> web.StreamResponse:
    await request.read()
    events = int(request.query.get("events", request.app[EVENTS]))
    interval = float(request.query.get("interval", request.app[INTERVAL]))
    response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
    await response.prepare(request)
    start = dict(ANTHROPIC_MESSAGE, content=[], stop_reason=None)
    await response.write(
        (
            sse("message_start", {"type": "message_start", "message": start})
            + sse(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
        ).encode()
    )
    for i in range(events):
        if i and interval:
            await asyncio.sleep(interval)
        await response.write(
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": f"@{time.time():.6f}"},
                },
            ).encode()
        )
    await response.write(
        (
            sse("content_block_stop", {"type": "content_block_stop", "index": 0})
            + sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": events},
                },
            )
            + sse("message_stop", {"type": "message_stop"})
        ).encode()
    )
    await response.write_eof()
    return response


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[EVENTS] = args.events
    app[INTERVAL] = args.interval
    app.router.add_post("/v1/messages", messages)
    app.router.add_get("/health", health)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, backlog=4096)


if __name__ == "__main__":
    main()
