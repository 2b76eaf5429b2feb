"""Profile parley's hot path under wrk load with py-spy, and summarise where the time goes.

    python bench/profile_hotpath.py [--scenario native|native-stream] [--seconds 10] [--concurrency 16]
                            [--out bench/out]

Writes <out>/<scenario>.collapsed (py-spy's raw collapsed stacks; feed it to any flame-graph tool)
and prints the functions with the most inclusive and self samples, grouped by module.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(os.path.dirname(HERE), "src"))

import load  # noqa: E402
import scenarios as sc  # noqa: E402
import targets as tg  # noqa: E402
from upstreams import ensure_tool, start_stream_upstream, start_upstream  # noqa: E402


def _function(frame: str) -> str:
    """`name (path/file.py:123)` -> `name (path/file.py)`: lines of one function add up."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def _package(frame: str) -> str:
    where = frame.partition(" (")[2]
    top = where.split("/", 1)[0] if "/" in where else where.split(".", 1)[0]
    return top or "(no Python frame: uvloop/C)"


def summarise(path: str, top: int = 25) -> str:
    """Inclusive and self shares by function, and self share by top-level package."""
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    packages: collections.Counter = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            n = int(count)
            total += n
            frames = [_function(fr) for fr in stack.split(";") if fr]
            for frame in set(frames):
                inclusive[frame] += n
            leaf = frames[-1] if frames else ""
            own[leaf] += n
            packages[_package(leaf)] += n
    lines = [f"{total} samples (main thread, on CPU)", "", "self time by package:"]
    lines += [f"{100 * n / total:5.1f}%  {pkg}" for pkg, n in packages.most_common(12)]
    lines += ["", "inclusive:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--scenario", default="native")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--rate", type=int, default=499, help="py-spy samples per second")
    p.add_argument("--out", default=os.path.join(HERE, "out"))
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="parley-profile-")
    notes: list[str] = []
    wrk = ensure_tool("wrk", "wrk", notes)
    pyspy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    up = start_upstream(os.path.join(workdir, "nginx"), notes)
    fast = start_stream_upstream(workdir, 3, 0.0)
    parley = None
    try:
        parley, _ = tg.start_parley(workdir, tg.model_list(up, fast.url, fast.url), 1, notes)
        s = next(s for s in sc.scenarios(up) if s.name == args.scenario)
        headers = dict(s.headers, **parley.headers)
        result: list = []
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
        subprocess.run(
            [
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
            ],
            check=True,
            capture_output=True,
        )
        runner.join()
        r = result[0]
        print(
            f"{args.scenario} at concurrency {args.concurrency}: {r.rps:.0f} req/s, p50 {r.p50_ms:.2f} ms "
            f"(under py-spy)\n"
        )
        print(summarise(collapsed))
    finally:
        if parley is not None:
            parley.stop()
        fast.stop()
        up.stop()
        shutil.rmtree(workdir, True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
