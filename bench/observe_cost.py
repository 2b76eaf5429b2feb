"""What metrics and traces cost a running gateway: CPU per request of `parley serve`, off and on.

    python bench/observe_cost.py [--requests 3000] [--rounds 3] [--concurrency 8]
    python bench/observe_cost.py --profile [--stream]     # the share of CPU samples, with py-spy

Two `parley serve` processes (1 worker, spend logging on, the fake upstream): one plain, one with
`callbacks: [prometheus, otel]` exporting to an OTLP receiver in its own process (counting only).
The same load goes to each in turn, `--rounds` times; CPU per request is the gateway's process
time (user + system, from /proc) over the requests it served. On a CPU-bound gateway throughput is
the inverse, so the ratio is the throughput cost; CPU time moves far less than wall-clock req/s on
a shared machine, and alternating the two in rounds spreads the noise over both. On a machine
shared with other work even that moves by +-10% (run `--callbacks none` for an A/A control), so
`--profile` measures the cost inside one process instead: py-spy samples the observed gateway under
load (every thread, including the exporter's) and reports the share of samples whose stack is in
the observers' code; that share is the throughput a CPU-bound gateway gives up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(os.path.dirname(HERE), "src"))

import httpx2 as httpx  # noqa: E402

from parley.testing.procs import FakeUpstream, Gateway, ServerProcess, anthropic_deployment, free_port  # noqa: E402
from procstats import cpu_seconds  # noqa: E402

MASTER = "sk-bench-observe"


async def drive(
    url: str, requests: int, concurrency: int, stream: bool, timeout: float = 30, key: str = MASTER
) -> None:
    body = {"model": "m", "max_tokens": 16, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    left = requests
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout) as client:

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                reply = await client.post("/v1/messages", json=body)
                await reply.aread()
                reply.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def measure(gw: Gateway, requests: int, concurrency: int, stream: bool) -> float:
    """Microseconds of gateway CPU per request."""
    before = cpu_seconds(gw.proc.pid)
    asyncio.run(drive(gw.url, requests, concurrency, stream))
    return (cpu_seconds(gw.proc.pid) - before) / requests * 1e6


OBSERVERS = (
    "filters/metrics/",
    "filters/tracing.py",
    "filters/otlp.py",
    "filters/callbacks.py",
    "core/observe.py",
    "prometheus_client/",
    "opentelemetry/",
)


def profile_share(gw: Gateway, concurrency: int, stream: bool, seconds: int = 10) -> str:
    """py-spy the gateway under load; the share of samples inside the observers' code."""
    spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    out = os.path.join(tempfile.mkdtemp(prefix="parley-spy-"), "raw.txt")
    load = threading.Thread(
        target=lambda: asyncio.run(drive(gw.url, 400 * (seconds + 4), concurrency, stream))
    )
    load.start()
    argv = [spy, "record", "-p", str(gw.proc.pid), "-d", str(seconds), "-r", "400", "-f", "raw", "-o", out]
    subprocess.run([*argv, "--nonblocking", "--threads"], capture_output=True, check=True)
    load.join()
    total, parts = 0, dict.fromkeys(OBSERVERS, 0)
    with open(out) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            total += int(count)
            hit = next((o for frame in stack.split(";") for o in OBSERVERS if o in frame), None)
            if hit is not None:
                parts[hit] += int(count)
    share = 100 * sum(parts.values()) / max(1, total)
    detail = ", ".join(f"{k} {100 * v / max(1, total):.1f}%" for k, v in parts.items() if v)
    return f"{total} samples, {share:.1f}% in the observers ({detail})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument(
        "--callbacks",
        default="prometheus,otel",
        help="what the second gateway turns on (none: both the same, to see the noise)",
    )
    p.add_argument("--json-only", action="store_true")
    p.add_argument(
        "--profile", action="store_true", help="py-spy share of CPU in the observers (bench extra)"
    )
    p.add_argument("--stream", action="store_true", help="with --profile: streamed requests")
    args = p.parse_args()
    upstream = FakeUpstream()
    port = free_port()
    receiver = ServerProcess(
        [sys.executable, "-m", "parley.testing.otlp", str(port), "--count-only"], port, "/"
    )
    workdir = tempfile.mkdtemp(prefix="parley-observe-")
    base = {
        "model_list": [anthropic_deployment("m", upstream)],
        "general_settings": {"master_key": MASTER, "database_url": os.path.join(workdir, "spend.db")},
    }
    names = [n for n in args.callbacks.split(",") if n and n != "none"]  # none: an A/A control run
    observed = dict(base, litellm_settings={"callbacks": names})
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{port}/v1/traces",
        "PARLEY_METRICS_DIR": workdir,
    }
    quiet = ["--log-level", "warning"]
    if args.profile:
        gw = Gateway(observed, env=env, extra_args=quiet)
        try:
            print(
                f"{'stream' if args.stream else 'json'}: {profile_share(gw, args.concurrency, args.stream)}"
            )
        finally:
            gw.stop()
            receiver.stop()
            upstream.stop()
        return 0
    gateways = {"off": Gateway(base, extra_args=quiet), "on": Gateway(observed, env=env, extra_args=quiet)}
    try:
        for stream in (False,) if args.json_only else (False, True):
            results: dict[str, list[float]] = {"off": [], "on": []}
            for gw in gateways.values():  # warm up
                measure(gw, 300, args.concurrency, stream)
            for _ in range(args.rounds):
                for name, gw in gateways.items():
                    results[name].append(measure(gw, args.requests, args.concurrency, stream))
            off, on = statistics.median(results["off"]), statistics.median(results["on"])
            kind = "stream" if stream else "json"
            print(
                f"{kind:6} off {off:6.0f} us CPU/request  on {on:6.0f} us CPU/request  "
                f"cost {100 * (on / off - 1):+5.1f}%  (rounds off {[round(x) for x in results['off']]}, "
                f"on {[round(x) for x in results['on']]})"
            )
    finally:
        for gw in gateways.values():
            gw.stop()
        receiver.stop()
        upstream.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
