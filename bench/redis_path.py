"""CPU of the Redis path alone: one admission call (rate limits, a budget hold, a cooldown read,
the settlements queued before it) and the settlements after it, as the filters make them, with
no HTTP around them. Against a redis-server at --url (default: one started on a free port).

    python bench/redis_path.py [--url redis://127.0.0.1:6379/0] [--requests 4000]

Prints CPU µs per request (this process only; the redis-server's own CPU is not in it) for one
request at a time and for 16 at once (where calls share writes and settlements ride along).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

import uvloop

from parley.core.context import LimitSpec
from parley.filters.rate_limit_store import ADMIT_PART as LIMITS
from parley.filters.rate_limit_store import LocalLimiter, RedisLimiter
from parley.router.health import COOLDOWN_PART
from parley.spend.budget_lua import ADMIT_PART as BUDGET
from parley.spend.ledger import BudgetLine, LocalLedger, RedisLedger
from parley.store.lua_batch import Ask, Combined
from parley.store.redis_link import RedisLink
from parley.testing.procs import RedisServer, free_port


async def measure(url: str, requests: int) -> list[str]:
    link = RedisLink(url, f"path{os.getpid()}")
    limiter = RedisLimiter(link, LocalLimiter())
    ledger = RedisLedger(link, LocalLedger(None, lambda k: (0.0, 0.0), asyncio.ensure_future), "bench")
    later = link.later
    script = Combined(link, [later.part(), LIMITS, BUDGET, COOLDOWN_PART])
    specs = [LimitSpec("key", "k0123456789abcdef", 10**8, 10**12, 10**5)]
    lines = [BudgetLine("key", "t0123456789abcdef", 1e6, None, None, 0.0, "key bench")]
    cooldown = Ask([link.key("cooldown", "d#0")], [], needed=False, data=["d#0"])
    count = 0

    async def one() -> None:
        nonlocal count
        count += 1
        rid = f"req_{count:024d}"
        asks = [
            later.take(later.kinds),
            limiter.ask(specs, rid),
            ledger.ask(rid, lines, 0.003, 0.001, 0.00002, 0.000015, {0: 0.0}),
            cooldown,
        ]
        results, _ = await script.call(asks)
        limiter.decide(specs, rid, results[1])
        ledger.grant(lines, 0.003, results[2], rid)
        await asyncio.sleep(0)  # (the upstream call)
        limiter.settle(specs, rid, 30, True)
        ledger.release(rid, 0.0001, lines)

    async def client(n: int) -> None:
        for _ in range(n):
            await one()

    out = []
    try:
        await client(200)  # scripts loaded, connection open
        for at_once in (1, 16):
            started = time.process_time()
            await asyncio.gather(*(client(requests // at_once) for _ in range(at_once)))
            await asyncio.sleep(0.05)  # the last settlements
            cpu = (time.process_time() - started) / requests * 1e6
            out.append(f"{at_once:2d} at once: {cpu:6.1f} µs CPU per request (admission + settlement)")
    finally:
        await link.close()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a Redis to use (default: a private redis-server on a free port)")
    p.add_argument("--requests", type=int, default=4000)
    args = p.parse_args()
    server = None if args.url else RedisServer(free_port())
    try:
        lines = uvloop.run(measure(args.url or server.url, args.requests))  # type: ignore[union-attr]
    finally:
        if server is not None:
            server.stop()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
