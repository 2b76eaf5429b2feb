"""Load generators: wrk with a Lua script for POST bodies, or a Python loop when wrk is unavailable."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from dataclasses import dataclass

import aiohttp
import orjson

WRK_LUA = r"""
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
local hf = assert(io.open(os.getenv("BENCH_HEADERS"), "rb"))
for line in hf:lines() do
  local k, v = line:match("^([^:]+): (.*)$")
  if k then wrk.headers[k] = v end
end
hf:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"mean_us":%.1f,"max_us":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,' ..
    '"err_timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    tool: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _write_inputs(workdir: str, body: bytes, headers: dict[str, str]) -> tuple[str, str]:
    os.makedirs(workdir, exist_ok=True)
    body_path = os.path.join(workdir, "body.json")
    headers_path = os.path.join(workdir, "headers.txt")
    with open(body_path, "wb") as f:
        f.write(body)
    with open(headers_path, "w") as f:
        f.writelines(f"{k}: {v}\n" for k, v in headers.items())
    return body_path, headers_path


def run_wrk(
    wrk: str, workdir: str, url: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float
) -> LoadResult:
    body_path, headers_path = _write_inputs(workdir, body, headers)
    script = os.path.join(workdir, "post.lua")
    with open(script, "w") as f:
        f.write(WRK_LUA)
    threads = 1 if concurrency < 8 else 2
    argv = [
        wrk,
        "-t",
        str(threads),
        "-c",
        str(concurrency),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        script,
        url,
    ]
    env = dict(os.environ, BENCH_BODY=body_path, BENCH_HEADERS=headers_path)
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
    match = re.search(r"BENCH_JSON (\{.*\})", out.stdout)
    if match is None:
        raise RuntimeError(f"wrk gave no result: {out.stdout}\n{out.stderr}")
    data = orjson.loads(match.group(1))
    errors = sum(data[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
    return LoadResult(
        data["requests"],
        data["duration_us"] / 1e6,
        data["p50_us"] / 1000,
        data["p99_us"] / 1000,
        errors,
        "wrk",
    )


def run_python(
    url: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float
) -> LoadResult:
    """A keep-alive asyncio client loop: far slower than wrk, so it bounds what it can measure."""
    return asyncio.run(_python_loop(url, body, headers, concurrency, seconds))


async def _python_loop(
    url: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float
) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        deadline = start + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as r:
                        await r.read()
                        ok = r.status < 400
                except aiohttp.ClientError:
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += not ok

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return LoadResult(
        len(latencies), elapsed, _pct(latencies, 50) * 1000, _pct(latencies, 99) * 1000, errors, "python"
    )


def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(len(values) * p / 100))]
