"""Profile parley's hot path under wrk load with py-spy, and summarise where the time goes.

    python bench/profile_hotpath.py [--scenario native|native-stream] [--seconds 10] [--concurrency 16]
                            [--out bench/out] [--redis | --limits]

Writes <out>/<scenario>.collapsed (py-spy's raw collapsed stacks; feed it to any flame-graph tool)
and prints the functions with the most inclusive and self samples, grouped by module.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(os.path.dirname(HERE), "src"))

import load  # noqa: E402
import scenarios as sc  # noqa: E402
import targets as tg  # noqa: E402
from parley.testing.procs import RedisServer, free_port  # noqa: E402
from upstreams import ensure_tool, start_stream_upstream, start_upstream  # noqa: E402


def _function(frame: str) -> str:
    """`name (path/file.py:123)` -> `name (path/file.py)`: lines of one function add up."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def _package(frame: str) -> str:
    where = frame.partition(" (")[2]
    top = where.split("/", 1)[0] if "/" in where else where.split(".", 1)[0]
    return top or "(no Python frame: uvloop/C)"


# Where a sample's time goes, by the first rule that matches its stack (outermost rules first).
# Each rule: (category, substrings of which one must be in some frame of the stack).
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("aiosqlite thread (SQLite executes)", ("aiosqlite/core.py",)),
    ("spend writer thread (SQLite)", ("parley/spend/sqlite_thread.py", "parley/spend/batch.py")),
    ("spend journal thread", ("parley/spend/journal.py",)),
    ("log writer thread", ("parley/logs.py",)),
    ("spend writer on the loop (SQLAlchemy build/compile)", ("parley/spend/writer.py", "sqlalchemy/")),
    ("spend row building + cost", ("parley/filters/spend_log.py",)),
    ("access log line", ("parley/filters/access_log.py",)),
    (
        "auth + budget + rate limit",
        (
            "parley/filters/virtual_keys.py",
            "parley/filters/budget.py",
            "parley/filters/rate_limit",
            "parley/pipeline/filter.py",
        ),
    ),
    (
        "Redis: admission + settle calls (lean connection, Lua parts)",
        (
            "parley/store/resp.py",
            "parley/store/lua_batch.py",
            "parley/store/redis_link.py",
            "parley/filters/admission.py",
            "redis/",
        ),
    ),
    ("router (deployment choice, retries, health)", ("parley/router/",)),
    ("upstream client (parley/transport, or aiohttp in older builds)", ("parley/transport/", "aiohttp/")),
    ("parley: body read/parse, endpoint, relay", ("parley/",)),
    ("Starlette layers + routing", ("starlette/",)),
    ("uvicorn (HTTP parse, response writes)", ("uvicorn/",)),
]


def categorise(stack: list[str]) -> str:
    """The category of one sample: the innermost frame that matches a rule decides."""
    for frame in reversed(stack):
        for name, needles in CATEGORIES:
            if any(n in frame for n in needles):
                return name
    return "asyncio/uvloop run loop, other"


def summarise(path: str, top: int = 25) -> str:
    """Shares by category (main thread vs others), by function (inclusive and self), by package."""
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    packages: collections.Counter = collections.Counter()
    categories: collections.Counter = collections.Counter()
    on_loop: collections.Counter = collections.Counter()  # the event loop's thread only
    threads: collections.Counter = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            n = int(count)
            total += n
            raw = [fr for fr in stack.split(";") if fr]
            thread = raw[0] if raw and raw[0].startswith(("thread", "process")) else ""
            frames = [_function(fr) for fr in raw if not fr.startswith(("thread", "process"))]
            for frame in set(frames):
                inclusive[frame] += n
            leaf = frames[-1] if frames else ""
            own[leaf] += n
            packages[_package(leaf)] += n
            category = categorise(frames)
            categories[category] += n
            if "MainThread" in thread:
                on_loop[category] += n
            threads[thread] += n
    lines = [f"{total} samples on CPU, all threads", "", "by category (innermost matching frame):"]
    lines += [f"{100 * n / total:5.1f}%  {cat}" for cat, n in categories.most_common()]
    loop_total = sum(on_loop.values()) or 1
    lines += ["", f"the event loop's thread only ({loop_total} samples), by category:"]
    lines += [f"{100 * n / loop_total:5.1f}%  {cat}" for cat, n in on_loop.most_common()]
    lines += ["", "by thread:"] + [f"{100 * n / total:5.1f}%  {t}" for t, n in threads.most_common(8)]
    lines += ["", "self time by package:"]
    lines += [f"{100 * n / total:5.1f}%  {pkg}" for pkg, n in packages.most_common(12)]
    lines += ["", "inclusive:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines)


def _watch_snapshot(workdir: str) -> dict:
    """The loop watch's latest report (it rewrites its file every second)."""
    time.sleep(1.2)
    for name in os.listdir(workdir):
        if name.startswith("loopwatch.") and name.endswith(".json"):
            with open(os.path.join(workdir, name), "rb") as f:
                return json.loads(f.read())
    return {}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--scenario", default="native")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--rate", type=int, default=499, help="py-spy samples per second")
    p.add_argument("--out", default=os.path.join(HERE, "out"))
    p.add_argument("--src", help="profile parley from another checkout's src/ directory")
    p.add_argument(
        "--redis",
        action="store_true",
        help="parley with Redis (a private redis-server) and a key with a budget and rate limits",
    )
    p.add_argument("--limits", action="store_true", help="the key has a budget and rate limits (no Redis)")
    p.add_argument("--gc", choices=["server", "default"], default="server", help="PARLEY_GC for parley")
    p.add_argument(
        "--watch",
        action="store_true",
        help="instead of py-spy: parley's loop watch (loop lag, what blocks it, GC pauses)",
    )
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="parley-profile-")
    notes: list[str] = []
    wrk = ensure_tool("wrk", "wrk", notes)
    pyspy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    up = start_upstream(os.path.join(workdir, "nginx"), notes)
    fast = start_stream_upstream(workdir, 3, 0.0)
    parley = redis = None
    try:
        if args.redis:
            redis = RedisServer(free_port())
        watch = os.path.join(workdir, "loopwatch")
        parley, _ = tg.start_parley(
            workdir,
            tg.model_list(up, fast.url, fast.url),
            1,
            notes,
            src=args.src,
            extra_env={"PARLEY_GC": args.gc, **({"PARLEY_LOOP_WATCH": watch} if args.watch else {})},
            redis=redis.url if redis is not None else None,
            limits=args.redis or args.limits,
        )
        s = next(s for s in sc.scenarios(up) if s.name == args.scenario)
        headers = dict(s.headers, **parley.headers)
        result: list = []
        before = _watch_snapshot(workdir) if args.watch else {}
        runner = threading.Thread(
            target=lambda: result.append(
                load.run_wrk(
                    wrk,
                    os.path.join(workdir, "wrk"),
                    parley.url + s.path,
                    s.body,
                    headers,
                    args.concurrency,
                    args.seconds + 2,
                )
            )
        )
        runner.start()
        collapsed = os.path.join(args.out, f"{args.scenario}.collapsed")
        spy = (
            []
            if args.watch
            else [
                pyspy,
                "record",
                "--pid",
                str(parley.pid),
                "--duration",
                str(args.seconds),
                "--rate",
                str(args.rate),
                "--format",
                "raw",
                "--output",
                collapsed,
                "--nonblocking",
                "--threads",
            ]
        )
        if spy:
            subprocess.run(spy, check=True, capture_output=True, timeout=args.seconds + 60)
        runner.join(args.seconds + 120)
        r = result[0]
        under = "under py-spy" if spy else "no py-spy"
        print(
            f"{args.scenario} at concurrency {args.concurrency}: {r.rps:.0f} req/s, p50 {r.p50_ms:.2f} ms, "
            f"p99 {r.p99_ms:.2f} ms ({under})\n"
        )
        if spy:
            print(summarise(collapsed))
        if args.watch and r.requests:
            after = _watch_snapshot(workdir)
            cpu0, cpu1 = before.get("thread_cpu_s", {}), after.get("thread_cpu_s", {})
            print("CPU per request by thread (µs), during the run:")
            for name, total in sorted(cpu1.items(), key=lambda kv: -kv[1]):
                print(f"  {1e6 * (total - cpu0.get(name, 0.0)) / r.requests:8.1f}  {name}")
        parley.stop()
        for name in sorted(os.listdir(workdir)):
            if name.startswith("loopwatch."):
                with open(os.path.join(workdir, name)) as f:
                    print(f"\nevent loop and GC ({name}):\n{f.read()}")
    finally:
        if parley is not None:
            parley.stop()
        if redis is not None:
            redis.stop()
        fast.stop()
        up.stop()
        shutil.rmtree(workdir, True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
