"""Where the redis-server's time goes in one admission call, by Redis's own count (INFO commandstats).

    python bench/redis_lua.py [--calls 6000] [--rounds 3]

Runs `bench/redis_path.py`'s requests against a private redis-server and reports the server's CPU
and `redis.call`s per request; then replays one real admission call (settlements carried, the rate
limits, a budget hold, a cooldown read) `--calls` times, as it is and in variants, and prints
Redis's microseconds per EVALSHA for each (the median of `--rounds`):

- the call as sent; each part alone (the others not run); no part (the script's entry: decoding
  the arguments, slicing them per part, encoding the answer);
- the same Lua with every `redis.call` but TIME answered by a stub: what the Lua itself costs, apart
  from the commands it calls.

The replay repeats one request id, so its sets stay small; the bench's own runs grow the rpm set
(one entry per request in the last minute). Compare variants of one run; the machine's load moves
all of them.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

import redis
import uvloop

import redis_path
from parley.store.redis_link import RedisLink
from parley.testing.procs import RedisServer, free_port

_STUB = """
local function stub(cmd, ...)
  if cmd == 'TIME' then return redis.call('TIME') end
  if cmd == 'HMGET' then return {} end
  if cmd == 'HGET' then return '0.001' end
  if cmd == 'ZRANGE' or cmd == 'SMEMBERS' or cmd == 'ZRANGEBYSCORE' then return {} end
  return 0
end
"""


def capture(url: str, requests: int) -> tuple[list[str], tuple[str, list[str], list[Any]]]:
    """redis_path's run, and the admission call that carried the most (script, keys, args)."""
    calls: list[tuple[str, list[str], list[Any]]] = []
    real = RedisLink.eval

    async def spy(self, script, keys, args):  # type: ignore[no-untyped-def]
        calls.append((script.lua, list(keys), list(args)))
        return await real(self, script, keys, args)

    RedisLink.eval = spy  # type: ignore[method-assign]
    try:
        lines = uvloop.run(redis_path.measure(url, requests))
    finally:
        RedisLink.eval = real  # type: ignore[method-assign]
    admissions = [c for c in calls[-500:] if "local function admit" in c[0]]
    return lines, max(admissions, key=lambda c: len(c[1]))


def usec_per_call(r: redis.Redis, lua: str, keys: list[str], args: list[Any], n: int) -> float:
    sha = r.script_load(lua)
    r.config_resetstat()
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.evalsha(sha, len(keys), *keys, *args)
        if i % 500 == 499:
            pipe.execute()
    pipe.execute()
    return float(r.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])


def variants(lua: str) -> list[tuple[str, str]]:
    runs = re.findall(r"local r, stop = (\w+)\(keys\[(\d+)\], args\[\d+\]\)", lua)
    checks = re.findall(r"local r = (\w+)\(keys\[(\d+)\], args\[\d+\]\)", lua)

    def only(src: str, keep: tuple[str, ...]) -> str:
        for fn, i in runs:
            if fn not in keep:
                call = f"local r, stop = {fn}(keys[{i}], args[{i}])"
                src = src.replace(call, "local r, stop = false, false")
        for fn, i in checks:
            if fn not in keep:
                src = src.replace(f"local r = {fn}(keys[{i}], args[{i}])", "local r = nil")
        return src

    stubbed = lua.replace("redis.call(", "stub(")
    stubbed = _STUB + stubbed.replace("return stub('TIME')", "return redis.call('TIME')")
    out = [("as sent", lua)]
    for fn, _ in runs:  # (a budget's check runs with its reservation)
        out.append((f"only {fn}", only(lua, (fn, *(c for c, _ in checks if fn.startswith("budget"))))))
    out += [("no part", only(lua, ())), ("as sent, commands stubbed (the Lua alone)", stubbed)]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=6000, help="EVALSHAs per variant and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=4000, help="redis_path's requests (each concurrency)")
    args = p.parse_args()
    server = RedisServer(free_port())
    try:
        r = redis.Redis.from_url(server.url)
        lines, (lua, keys, argv) = capture(server.url, args.requests)
        stats, cpu = r.info("commandstats"), r.info("cpu")
        total = 2 * args.requests + 200
        scripts = ("cmdstat_evalsha", "cmdstat_script")
        calls = sum(v["calls"] for k, v in stats.items() if not k.startswith(scripts))
        seconds = cpu["used_cpu_user"] + cpu["used_cpu_sys"]
        print("\n".join(lines))
        per = f"{seconds / total * 1e6:.1f} µs CPU and {calls / total:.1f} redis.calls"
        print(f"redis-server: {per} per request")
        print(f"\nreplayed admission call: {len(keys)} keys, {len(argv[0])} bytes of arguments")
        times: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, src in variants(lua):
                times.setdefault(name, []).append(usec_per_call(r, src, keys, argv, args.calls))
        for name, values in times.items():
            print(f"  {name:45s} {statistics.median(values):6.1f} µs per EVALSHA")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
