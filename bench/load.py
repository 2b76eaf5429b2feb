"""Load generators: wrk with a Lua script for POST bodies, or a Python loop when wrk is unavailable."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
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
    failure: str | None = None  # why the run gave no numbers ("timeout ...", "wrk gave no result ...")

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
    wrk: str,
    workdir: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    concurrency: int,
    seconds: float,
    budget: float | None = None,
) -> LoadResult:
    """One wrk run, killed after `budget` seconds (default `wrk_budget`): a timeout is a result."""
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
    budget = budget or wrk_budget(seconds)
    out, err, timed_out = run_bounded(argv, env, budget)
    if timed_out:
        return failed("wrk", seconds, f"timeout: wrk still running after {budget:.0f} s (killed)")
    match = re.search(r"BENCH_JSON (\{.*\})", out)
    if match is None:
        return failed("wrk", seconds, f"wrk gave no result: {(out + err).strip()[-300:]}")
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


def wrk_budget(seconds: float) -> float:
    """How long one wrk run may take: its duration, its 30-s request timeout, and slack for a
    loaded machine. Past it wrk is killed and the row says `timeout`."""
    return max(1, round(seconds)) + 30 + 30


def failed(tool: str, seconds: float, why: str) -> LoadResult:
    return LoadResult(0, seconds, float("nan"), float("nan"), 0, tool, failure=why)


def run_bounded(argv: list[str], env: dict[str, str], budget: float) -> tuple[str, str, bool]:
    """Run `argv` in its own process group; kill the group after `budget` seconds.
    Returns (stdout, stderr, timed_out)."""
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=budget)
        return out, err, False
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return out or "", err or "", True


def run_python(
    url: str,
    body: bytes,
    headers: dict[str, str],
    concurrency: int,
    seconds: float,
    budget: float | None = None,
) -> LoadResult:
    """A keep-alive asyncio client loop: far slower than wrk, so it bounds what it can measure."""
    budget = budget or seconds + 60

    async def bounded() -> LoadResult:
        try:
            return await asyncio.wait_for(_python_loop(url, body, headers, concurrency, seconds), budget)
        except TimeoutError:
            return failed("python", seconds, f"timeout: the Python load loop ran past {budget:.0f} s")

    return asyncio.run(bounded())


async def _python_loop(
    url: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float
) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
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
                except (aiohttp.ClientError, TimeoutError):
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
