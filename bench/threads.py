"""CPU per request of each of the gateway's threads under load, user and system apart, with their
context switches: what moved work off the event loop costs, and where a thread waits.

    python bench/threads.py [--duration 8] [--concurrency 16] [--runs 1] [--no-bare]
                            [--key master|budget|limits]

nginx answers a canned native reply; wrk drives `POST /v1/messages` at the concurrency after a 2-s
warm-up; each thread's user and system time and voluntary/involuntary context switches are read
from /proc/<pid>/task/*/{stat,status} before and after. parley names its own threads in the OS
(`parley-spend-wr`, `parley-spend-jo` ...; Python threads are all `python` otherwise), so threads
are summed by name. The bare forwarder (one thread) is measured the same way first, side by side.
A target that fails to start or to answer is a note; the table is always printed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import traceback
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(os.path.dirname(HERE), "src"))

import load  # noqa: E402
import scenarios as sc  # noqa: E402
import targets as tg  # noqa: E402
from upstreams import ensure_tool, start_bare_forwarder, start_upstream  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Usage:
    user: float = 0.0  # seconds
    system: float = 0.0
    voluntary: int = 0
    involuntary: int = 0
    threads: int = 0


@dataclass
class Result:
    name: str
    rps: float = 0.0
    requests: int = 0
    by_thread: dict[str, Usage] = field(default_factory=dict)
    note: str = ""


def snapshot(pid: int) -> dict[str, Usage]:
    """Each thread of `pid` by thread id: (name, usage); threads that end meanwhile are skipped."""
    out: dict[str, Usage] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        base = f"/proc/{pid}/task/{tid}"
        try:
            with open(f"{base}/stat") as f:
                stat = f.read()
            with open(f"{base}/status") as f:
                status = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[f"{tid} {name}"] = Usage(
            int(fields[11]) / TICK,
            int(fields[12]) / TICK,
            int(status.get("voluntary_ctxt_switches", "0")),
            int(status.get("nonvoluntary_ctxt_switches", "0")),
        )
    return out


def by_name(before: dict[str, Usage], after: dict[str, Usage], pid: int) -> dict[str, Usage]:
    """What each thread name used between the two snapshots (threads of one name summed; the
    process's first thread, the event loop, apart)."""
    out: dict[str, Usage] = {}
    for key, end in after.items():
        start = before.get(key, Usage())
        tid, name = key.split(" ", 1)
        name = "main (event loop)" if tid == str(pid) else name
        u = out.setdefault(name, Usage())
        u.user += end.user - start.user
        u.system += end.system - start.system
        u.voluntary += end.voluntary - start.voluntary
        u.involuntary += end.involuntary - start.involuntary
        u.threads += 1
    return out


def measure(
    name: str,
    wrk: str,
    workdir: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    pid: int,
    args: argparse.Namespace,
) -> Result:
    result = Result(name)
    try:
        load.run_wrk(wrk, workdir, url, body, headers, args.concurrency, 2, budget=30)  # warm-up
        before = snapshot(pid)
        run = load.run_wrk(wrk, workdir, url, body, headers, args.concurrency, args.duration, budget=120)
        after = snapshot(pid)
    except Exception as e:  # a failed run is a row with a note, not the end of the table
        result.note = f"failed: {type(e).__name__}: {e}"
        return result
    result.rps, result.requests = run.rps, run.requests
    result.by_thread = by_name(before, after, pid)
    if run.failure or not run.requests:
        result.note = run.failure or "no request answered"
    return result


def table(results: list[Result]) -> str:
    lines = [
        "| target | thread | threads | user µs/req | system µs/req | total µs/req | voluntary cs/req "
        "| involuntary cs/req |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if not r.requests:
            lines.append(f"| {r.name} | ({r.note or 'not measured'}) | | | | | | |")
            continue
        n, total = r.requests, Usage()
        for thread, u in sorted(r.by_thread.items(), key=lambda kv: -(kv[1].user + kv[1].system)):
            if u.user + u.system + u.voluntary == 0:
                continue
            total.user += u.user
            total.system += u.system
            lines.append(
                f"| {r.name} | {thread} | {u.threads} | {u.user * 1e6 / n:.1f} | {u.system * 1e6 / n:.1f} "
                f"| {(u.user + u.system) * 1e6 / n:.1f} | {u.voluntary / n:.3f} | {u.involuntary / n:.3f} |"
            )
        lines.append(
            f"| {r.name} | **all** ({r.rps:.0f} req/s) | | {total.user * 1e6 / n:.1f} | "
            f"{total.system * 1e6 / n:.1f} | **{(total.user + total.system) * 1e6 / n:.1f}** | | |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--runs", type=int, default=1, help="measurements of each target, one after another")
    p.add_argument("--no-bare", action="store_true", help="parley only")
    p.add_argument(
        "--observe",
        action="store_true",
        help="also parley with Prometheus metrics and OTLP traces on (`parley+obs`, traces to a "
        "loopback receiver), measured beside parley",
    )
    p.add_argument(
        "--key",
        choices=("budget", "limits", "master"),
        default="budget",
        help="key + budget, + limits, or master",
    )
    args = p.parse_args(argv)
    notes: list[str] = []
    results: list[Result] = []
    workdir = tempfile.mkdtemp(prefix="parley-threads-")
    wrk = ensure_tool("wrk", "wrk", notes)
    with contextlib.ExitStack() as stack:
        try:
            if wrk is None:
                raise RuntimeError("wrk is needed (apt-get install wrk)")
            up = start_upstream(os.path.join(workdir, "nginx"), notes, allow_nginx=True)
            stack.callback(up.stop)
            native = next(s for s in sc.scenarios(up) if s.name == "native")
            systems: list[tuple[str, str, dict[str, str], int]] = []
            if not args.no_bare:
                bare = start_bare_forwarder(workdir, up)
                stack.callback(bare.stop)
                systems.append(("bare", bare.url, native.headers, bare.proc.pid))
            models = tg.model_list(up, up.anthropic, up.anthropic)
            traces = tg.start_traces_receiver(stack) if args.observe else None
            for name, observe in [("parley", None)] + ([("parley+obs", traces)] if traces else []):
                parley, _ = tg.start_parley(
                    workdir, models, 1, notes, limits=args.key == "limits", observe=observe, name=name
                )
                stack.callback(parley.stop)
                if args.key == "master":  # (start_parley made a virtual key)
                    parley.headers = {"x-api-key": tg.MASTER}
                assert parley.pid is not None
                systems.append((name, parley.url, dict(native.headers, **parley.headers), parley.pid))
            for _ in range(args.runs):
                for name, url, headers, pid in systems:
                    results.append(
                        measure(name, wrk, workdir, url + native.path, native.body, headers, pid, args)
                    )
        except Exception:
            notes.append("stopped early: " + " / ".join(traceback.format_exc().strip().splitlines()[-3:]))
    print(
        f"native /v1/messages, c={args.concurrency}, {args.duration:g} s per run, parley's key: {args.key}\n"
    )
    print(table(results))
    for note in notes:
        print(f"\n- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
