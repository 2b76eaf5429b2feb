"""Redis round trips per request: `parley serve` with Redis, a virtual key with a budget and rate
limits, a model served by two deployments (so the router reads cooldowns), against a private
redis-server watched with MONITOR.

    python bench/redis_calls.py [--requests 20] [--gap 0.05] [--concurrency 1] [--redis-port N]
                                [--src DIR]

Prints each command clients sent while the requests ran (Lua's own commands excluded: they cost
no round trip), by what it is for, per request. `--src` measures another build's src/ directory.
Deterministic, unlike timings: count the work, then measure the time with bench/run.py --redis.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

import orjson  # noqa: E402

from parley.testing.procs import FakeUpstream, Gateway, RedisServer, anthropic_deployment, free_port  # noqa: E402
from parley.testing.redis_monitor import Command, RedisMonitor  # noqa: E402

MASTER = "sk-bench-master-0123456789"
MODEL = "bench-model"
BODY = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


def post(url: str, payload: dict, key: str) -> tuple[int, dict]:
    headers = {"content-type": "application/json", "x-api-key": key}
    req = urllib.request.Request(url, data=orjson.dumps(payload), method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, orjson.loads(r.read())


def purpose(cmd: Command, prefix: str) -> str:
    """What a command is for, from its name and the keys it names."""
    if cmd.name in ("EVALSHA", "EVAL"):
        n = int(cmd.args[2])
        keys = cmd.args[3 : 3 + n]
        parts = sorted({k[len(prefix) + 1 :].split(":", 1)[0] for k in keys if k.startswith(prefix)})
        return f"{cmd.name} [{'+'.join(parts) or 'no keys'}]"
    if cmd.name == "SET" and len(cmd.args) > 1 and ":alive:" in cmd.args[1]:
        return "SET heartbeat"
    if cmd.name == "PTTL":
        return "PTTL cooldown (pipelined)"
    return cmd.name


def start(src: str | None, redis_url: str, prefix: str, upstream: FakeUpstream, workdir: str) -> Gateway:
    config = {
        "model_list": [anthropic_deployment(MODEL, upstream), anthropic_deployment(MODEL, upstream)],
        "general_settings": {"master_key": MASTER, "database_url": f"sqlite+aiosqlite:///{workdir}/calls.db"},
        "router_settings": {"redis_url": redis_url, "redis_key_prefix": prefix},
    }
    env = {"PYTHONPATH": os.path.abspath(src)} if src else None
    return Gateway(config, env=env, extra_args=["--log-level", "warning"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--gap", type=float, default=0.05, help="seconds between requests")
    p.add_argument(
        "--concurrency", type=int, default=1, help="clients at once (each waits --gap between its requests)"
    )
    p.add_argument("--redis-port", type=int, help="port for the private redis-server (default: a free one)")
    p.add_argument("--src", help="measure parley from another checkout's src/ directory")
    args = p.parse_args(argv)
    prefix = "calls"
    redis = RedisServer(args.redis_port or free_port())
    upstream = FakeUpstream()
    workdir = tempfile.mkdtemp(prefix="parley-redis-calls-")
    gw = None
    try:
        gw = start(args.src, redis.url, prefix, upstream, workdir)
        _, made = post(
            gw.url + "/key/generate",
            {"max_budget": 100.0, "rpm_limit": 100000, "tpm_limit": 10**9, "max_parallel_requests": 1000},
            MASTER,
        )
        key = made["key"]
        for _ in range(3):  # warm-up: scripts loaded, budgets seeded from the database
            post(gw.url + "/v1/messages", BODY, key)
        time.sleep(1.5)
        with RedisMonitor(redis.port) as monitor:
            started = time.monotonic()

            def client(n: int) -> None:
                for _ in range(n):
                    status, _ = post(gw.url + "/v1/messages", BODY, key)
                    assert status == 200
                    time.sleep(args.gap)

            with ThreadPoolExecutor(args.concurrency) as pool:
                list(pool.map(client, [args.requests // args.concurrency] * args.concurrency))
            elapsed = time.monotonic() - started
            seen = monitor.commands(settle=0.5)
    finally:
        if gw is not None:
            gw.stop()
            trouble = [line for line in gw.log().splitlines() if "Redis" in line or "Error" in line]
            if trouble:
                print("gateway log:\n  " + "\n  ".join(trouble[:20]))
        upstream.stop()
        redis.stop()
    counts = collections.Counter(purpose(c, prefix) for c in seen)
    n = args.requests // args.concurrency * args.concurrency
    print(
        f"{n} requests in {elapsed:.2f} s ({args.concurrency} clients, each waiting {args.gap} s between "
        f"requests), build: {args.src or 'this checkout'}"
    )
    print(f"{'command (what for)':44} {'total':>6} {'per request':>12}")
    for what, count in counts.most_common():
        print(f"{what:44} {count:6d} {count / n:12.2f}")
    background = sum(v for k, v in counts.items() if k in ("SET heartbeat", "PING", "SUBSCRIBE"))
    print(f"{'all commands':44} {sum(counts.values()):6d} {sum(counts.values()) / n:12.2f}")
    print(f"{'  of which background (heartbeat loop)':44} {background:6d} {background / n:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
