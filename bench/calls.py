"""Work per request, counted rather than timed: function calls through the gateway in process.

    python bench/calls.py [--requests 300] [--spend] [--observe [prometheus,otel]]
                          [--redis URL] [--limits] [--top N] [--direct [--canned]] [--only json|stream]

Wall-clock numbers on a shared 2-core machine move by 10-25% from run to run; call counts do not.
The gateway runs in process (its real ASGI app, `httpx2.ASGITransport` as the client) against
`parley fake-upstream` on loopback; cProfile counts every call for N JSON and N streamed
`/v1/messages` requests. Compare two builds by pointing PYTHONPATH at each one's `src`.
`--top N` also prints the N functions with the most time of their own (cProfile's `tottime`) per
request, the in-process client's own left out.
`--direct` instead drives the served ASGI app as uvicorn would (a scope, `receive` and `send`; no
HTTP client, no profiler) and reports the process's CPU per request (median of 5 rounds): parley's
own work plus the upstream client, without the server's HTTP parsing. `--direct --canned` also
replaces the upstream call with a canned reply (no I/O at all): parley's own work alone, the
steadiest figure on a busy machine (nothing waits, so other processes barely move it).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
import urllib.request

sys.path.append(
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
)  # PYTHONPATH wins
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/bodies.py

import httpx2 as httpx
import orjson

from parley.config import build_config
from parley.server.app import create_app
from parley.testing.procs import FakeUpstream, ServerProcess, free_port

HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


MASTER = "sk-calls-master-0123456789"


def served(app):
    """The app as `parley serve` runs it (the hot-route dispatcher in front, when the build has it)."""
    try:
        from parley.server.api import ApiRoutes
        from parley.server.hot import HotRoutes
    except ImportError:
        return app
    return HotRoutes(app, ApiRoutes(app.state.gateway))


def _scope(headers: dict[str, str]) -> dict:
    raw = [(b"host", b"parley"), (b"content-type", b"application/json")]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 4000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": "/v1/messages",
        "raw_path": b"/v1/messages",
        "query_string": b"",
        "headers": raw,
        "state": {},
    }


async def _direct(app, headers: dict[str, str], body: bytes, requests: int) -> tuple[float, float]:
    """CPU µs per request (median and least of 5 rounds) with the app driven directly, as uvicorn
    calls it."""
    raw = _scope(headers)["headers"] + [(b"content-length", str(len(body)).encode())]
    loop = asyncio.get_running_loop()
    results = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(requests):
            sent: list[dict] = []
            state = {"read": False}
            finished = loop.create_future()

            async def receive(state=state, finished=finished) -> dict:
                if not state["read"]:
                    state["read"] = True
                    return {"type": "http.request", "body": body, "more_body": False}
                await finished
                return {"type": "http.disconnect"}

            async def send(message: dict, sent=sent, finished=finished) -> None:
                sent.append(message)
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    finished.set_result(None)

            scope = dict(_scope({}), headers=raw)
            await app(scope, receive, send)
            if sent[0]["status"] != 200:
                raise RuntimeError(f"request failed: {sent[0]['status']} {sent[1:]!r:.300}")
        results.append(1e6 * (time.process_time() - started) / requests)
    return sorted(results)[2], min(results)


def _can(gateway) -> None:
    """The upstream client answers at once with the bench's canned message or 10-delta stream."""
    from bodies import ANTHROPIC_MESSAGE, STREAM_TEXTS, anthropic_stream
    from parley.core.stream import FrameSource, UpstreamReply

    message = orjson.dumps(ANTHROPIC_MESSAGE)
    frames = [f.encode() + b"\n\n" for f in anthropic_stream(STREAM_TEXTS).split("\n\n") if f]

    async def send(method, url, headers, body, timeout, stream, connect_timeout=None):
        head = {"content-type": "text/event-stream" if stream else "application/json", "request-id": "r"}
        if stream:
            return UpstreamReply(200, head, source=FrameSource([b"".join(frames)]))  # one read, as nginx
        return UpstreamReply(200, head, body=message)

    gateway.http.send = send


async def measure(
    requests: int,
    spend: bool,
    observe: list[str],
    redis: str | None = None,
    limits: bool = False,
    top: int = 0,
    direct: bool = False,
    canned: bool = False,
    kinds: tuple[str, ...] = (),
) -> list[str]:
    upstream = FakeUpstream()
    receiver = None
    lines = []
    workdir = tempfile.mkdtemp(prefix="parley-calls-")
    try:
        params = {"model": "anthropic/m", "api_base": upstream.url, "api_key": "x"}
        raw: dict = {"model_list": [{"model_name": "m", "params": params}]}
        if spend:  # a virtual key, budget checks and spend logging to SQLite, as `make bench` runs
            raw["general_settings"] = {
                "master_key": MASTER,
                "database_url": f"sqlite+aiosqlite:///{workdir}/calls.db",
            }
        if observe:  # Prometheus metrics and OTLP traces, exported to a receiver in another process
            port = free_port()
            receiver = ServerProcess([sys.executable, "-m", "parley.testing.otlp", str(port)], port, "/")
            os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = f"http://127.0.0.1:{port}/v1/traces"
            raw["litellm_settings"] = {"callbacks": observe}
        if redis:  # limits, budget holds and cooldowns shared through Redis
            raw["router_settings"] = {"redis_url": redis, "redis_key_prefix": f"calls-{os.getpid()}"}
        app = create_app(build_config(raw, "bench"))
        gateway = app.state.gateway
        await gateway.start()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=served(app)), base_url="http://parley")
        headers = HEADERS
        if spend:
            key_limits = LIMITS if limits else {}
            made = await client.post(
                "/key/generate",
                json={"key_alias": "calls", **key_limits},
                headers={"authorization": "Bearer " + MASTER},
            )
            headers = dict(HEADERS, **{"x-api-key": made.json()["key"]})
        for stream in (False, True):
            if kinds and ("stream" if stream else "json") not in kinds:
                continue
            body = {
                "model": "m",
                "max_tokens": 16,
                "stream": stream,
                "messages": [{"role": "user", "content": "hi there"}],
            }
            for _ in range(20):  # warm up
                await (await client.post("/v1/messages", json=body, headers=headers)).aread()
            if spend:
                await gateway.store.writer.flush()
            if canned:
                _can(gateway)
            if direct:
                try:  # the server's GC settings (`parley serve` applies them after start-up)
                    from parley.core.runtime import tune_gc

                    tune_gc()
                except ImportError:
                    pass
                median, least = await _direct(served(app), headers, orjson.dumps(body), requests)
                how = "canned upstream" if canned else "direct ASGI"
                kind = "stream" if stream else "json"
                lines.append(f"{kind:6}  {median:7.1f} µs CPU/request ({how}; least {least:.1f})")
                continue
            profile = cProfile.Profile()
            started = time.process_time()
            profile.enable()
            for _ in range(requests):
                reply = await client.post("/v1/messages", json=body, headers=headers)
                await reply.aread()
                if reply.status_code != 200:
                    lines.append(f"request failed: {reply.status_code} {reply.text[:200]}")
                    break
            if spend:  # the rows' share of the writer's work (it batches every 0.5 s)
                await gateway.store.writer.flush()
            profile.disable()
            cpu = 1000 * (time.process_time() - started) / requests
            stats = pstats.Stats(profile)
            ours = sum(v[1] for k, v in stats.stats.items() if f"{os.sep}parley{os.sep}" in k[0])
            total = stats.total_calls
            lines.append(
                f"{'stream' if stream else 'json':6}  {total / requests:7.0f} calls/request "
                f"({ours / requests:.0f} in parley)  {cpu:.3f} ms CPU/request under cProfile"
            )
            if top:
                lines += _top(stats, top, requests)
            if os.environ.get("CALLS_DUMP"):
                stats.dump_stats(f"{os.environ['CALLS_DUMP']}.{'stream' if stream else 'json'}")
        await client.aclose()
        await gateway.stop()
        if receiver is not None:
            with urllib.request.urlopen(receiver.url + "/") as r:
                lines.append(f"received by the OTLP receiver: {r.read().decode()}")
    finally:
        upstream.stop()
        if receiver is not None:
            receiver.stop()
        shutil.rmtree(workdir, True)
    return lines


LIMITS = {"max_budget": 1e6, "rpm_limit": 10**8, "tpm_limit": 10**12, "max_parallel_requests": 10**5}


def _top(stats: pstats.Stats, n: int, requests: int) -> list[str]:
    """The `n` functions with the most time of their own, per request (the in-process client's,
    httpx2's, and this script's left out)."""
    items = stats.stats.items()  # type: ignore[attr-defined]
    server = [kv for kv in items if "httpx2" not in kv[0][0] and "calls.py" not in kv[0][0]]
    rows = sorted(server, key=lambda kv: kv[1][2], reverse=True)[:n]
    out = ["  own µs/req  calls/req  function"]
    for (path, line, name), (_, calls, own, *_rest) in rows:
        where = "/".join(path.split(os.sep)[-2:])
        out.append(f"  {own * 1e6 / requests:10.1f} {calls / requests:10.1f}  {where}:{line} {name}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument(
        "--spend", action="store_true", help="a virtual key and spend logging to SQLite (as `make bench`)"
    )
    parser.add_argument(
        "--observe",
        nargs="?",
        const="prometheus,otel",
        default="",
        help="callbacks to turn on (default with the flag: prometheus,otel; traces go to an OTLP receiver)",
    )
    parser.add_argument("--redis", help="router_settings.redis_url (e.g. redis://127.0.0.1:6379/0)")
    parser.add_argument(
        "--limits", action="store_true", help="with --spend: the key has a budget and rate limits"
    )
    parser.add_argument("--direct", action="store_true", help="CPU per request with the app driven directly")
    parser.add_argument("--canned", action="store_true", help="with --direct: no upstream call at all")
    parser.add_argument("--only", choices=["json", "stream"], help="measure one kind of request only")
    parser.add_argument("--top", type=int, default=0, help="print the N functions with the most self time")
    args = parser.parse_args()
    try:
        observe = [c for c in args.observe.split(",") if c]
        import uvloop  # the loop `parley serve` runs on (the profiled counts keep asyncio's, as before)

        run = uvloop.run if args.direct else asyncio.run
        lines = run(
            measure(
                args.requests,
                args.spend,
                observe,
                args.redis,
                args.limits,
                args.top,
                args.direct,
                args.canned,
                (args.only,) if args.only else (),
            )
        )
    except Exception as e:  # the benchmark never crashes: say what failed
        print(f"calls.py: could not measure: {type(e).__name__}: {e}")
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
