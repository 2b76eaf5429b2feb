"""Work per request, counted rather than timed: function calls through the gateway in process.

    python bench/calls.py [--requests 300] [--spend] [--observe [prometheus,otel]]
                          [--redis URL] [--limits] [--top N]

Wall-clock numbers on a shared 2-core machine move by 10-25% from run to run; call counts do not.
The gateway runs in process (its real ASGI app, `httpx2.ASGITransport` as the client) against
`parley fake-upstream` on loopback; cProfile counts every call for N JSON and N streamed
`/v1/messages` requests. Compare two builds by pointing PYTHONPATH at each one's `src`.
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

import httpx2 as httpx

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


async def measure(
    requests: int,
    spend: bool,
    observe: list[str],
    redis: str | None = None,
    limits: bool = False,
    top: int = 0,
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
    """The `n` functions with the most time of their own, per request."""
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]  # type: ignore[attr-defined]
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
    parser.add_argument("--top", type=int, default=0, help="list the N functions with most own time")
    args = parser.parse_args()
    try:
        observe = [c for c in args.observe.split(",") if c]
        lines = asyncio.run(measure(args.requests, args.spend, observe, args.redis, args.limits, args.top))
    except Exception as e:  # the benchmark never crashes: say what failed
        print(f"calls.py: could not measure: {type(e).__name__}: {e}")
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
