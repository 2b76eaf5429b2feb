"""Scale-out measured (issue 22): two parley instances behind nginx sharing one Postgres database and
one Redis, against one instance with the same config, in one run.

    python bench/scaleout.py [--smoke] [--duration S] [--concurrency 16,64] [--out DIR]
                             [--setups pair,one-lb,one,sqlite] [--pg URL] [--wrk PATH] [--keep]
    make bench-scale                          # the same as bench/run.py --scale-out

What runs (all on 127.0.0.1): nginx with canned replies as the upstream (bench/upstreams.py); a
throwaway database parley_bench_<random> on --pg (dropped at the end); a private redis-server;
instances A and B (`parley serve`, one worker each, one config: that database, that Redis, a master
key, spend logging, a priced model) with nginx from deploy/nginx.conf in front; one virtual key with
a budget from /key/generate; wrk with the native /v1/messages body. Setups, at each concurrency:

  pair     A and B behind the load balancer
  one-lb   A alone behind a load balancer of its own (what the extra hop costs)
  one      A called directly
  no-redis instance P: the same database, no Redis, directly (what Redis costs)
  sqlite   instance S: SQLite spend logging, no Redis (bench/run.py's parley), directly

Reported per instance: requests served by its own count (its spend rows: each instance's deployment
id is its name), the balancer's count (its log), CPU ms per request (user+system of the instance's
process tree / its requests). Combined: req/s, p50/p99 and errors (wrk), CPU per request of the
gateways, the balancer, the database's server processes and Redis. The spend check: rows ==
requests served, and the key's recorded spend == the sum of its rows. Writes the scale-out section
of RESULTS.md in --out; a piece that fails becomes a note, the section is always written.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(os.path.dirname(HERE), "src"))

import bodies  # noqa: E402
import cluster  # noqa: E402
import load  # noqa: E402
import report  # noqa: E402
import scale_report  # noqa: E402
from parley.store.records import hash_key  # noqa: E402
from parley.testing.procs import Gateway, RedisServer, free_port  # noqa: E402
from procstats import Watch  # noqa: E402
from scale_report import Run, Share  # noqa: E402
from scenarios import ANTHROPIC_HEADERS  # noqa: E402
from targets import MASTER, post_json  # noqa: E402
from upstreams import ensure_tool, start_upstream  # noqa: E402

SETUPS = ("pair", "one-lb", "one", "no-redis", "sqlite")
LABELS = {
    "pair": "2 instances via nginx",
    "one-lb": "1 instance via nginx",
    "one": "1 instance direct",
    "no-redis": "1 instance direct, no Redis",
    "sqlite": "1 instance direct, SQLite, no Redis",
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="a short run that proves the harness and its checks")
    p.add_argument("--duration", type=float, help="seconds per measurement (default 10, smoke 2)")
    p.add_argument("--concurrency", help="comma-separated connection counts (default 16,64; smoke 8)")
    p.add_argument("--setups", help=f"comma-separated, of {','.join(SETUPS)} (default all; smoke pair,one)")
    p.add_argument("--out", default=HERE, help="where RESULTS.md is (default bench/)")
    p.add_argument("--pg", default="postgresql://127.0.0.1:5432", help="the Postgres server (trust auth)")
    p.add_argument("--wrk", help="the wrk binary (default: wrk on PATH, installed if missing)")
    p.add_argument("--load-timeout", type=float, help="seconds one load run may take (default duration+60)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    args = p.parse_args(argv)
    args.duration = args.duration or (2.0 if args.smoke else 10.0)
    args.concurrency = [int(c) for c in (args.concurrency or ("8" if args.smoke else "16,64")).split(",")]
    args.setups = (args.setups or ("pair,one" if args.smoke else ",".join(SETUPS))).split(",")
    unknown = set(args.setups) - set(SETUPS)
    if unknown:
        p.error(f"unknown setups: {', '.join(sorted(unknown))}")
    return args


class Setup:
    """Where the load goes and who serves it; `instances` maps names to their processes."""

    def __init__(self, name: str, url: str, instances: dict[str, Gateway], db, key: str, **side) -> None:
        self.name = name
        self.label = LABELS[name]
        self.url = url
        self.instances = instances
        self.db = db
        self.key = key
        self.balancer: cluster.Balancer | None = side.get("balancer")
        self.redis: RedisServer | None = side.get("redis")


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: str, notes: list[str]) -> None:
        self.args = args
        self.workdir = workdir
        self.notes = notes
        self.wrk = args.wrk or ensure_tool("wrk", "wrk", notes)
        if self.wrk is None:
            notes.append("NOTE: wrk not available; the load comes from a Python loop (the client's limit)")
        self.body = bodies.small_messages("bench-native")
        self.log_seen: dict[int, int] = {}  # instance pid -> log lines already read
        self.setups: list[Setup] = []

    def instance(self, name: str, config: dict, prefix: str) -> Gateway | None:
        """An instance, or None and a note; what it logged while starting is not a warning."""
        gw = piece(self.notes, f"instance {name}", cluster.start_instance, name, config, self.workdir, prefix)
        if gw is not None:
            self.log_seen[gw.proc.pid] = len(_lines(gw))
        return gw

    def load(self, url: str, key: str, conc: int) -> load.LoadResult:
        headers = dict(ANTHROPIC_HEADERS, **{"x-api-key": key})
        budget = self.args.load_timeout
        try:
            if self.wrk:
                work = os.path.join(self.workdir, "wrk")
                return load.run_wrk(self.wrk, work, url, self.body, headers, conc, self.args.duration, budget)
            return load.run_python(url, self.body, headers, conc, self.args.duration, budget=budget)
        except Exception as e:  # a crashed load generator is a row, not the end of the run
            return load.failed("load", self.args.duration, f"failed: {type(e).__name__}: {e}")

    def measure(self, s: Setup, conc: int) -> Run:
        before = cluster.spend_by_instance(s.db)
        offset = s.balancer.offset() if s.balancer else 0
        pg_before = cluster.backends_cpu(s.db.backend_pids())
        with contextlib.ExitStack() as stack:
            watches = {n: stack.enter_context(Watch(gw.proc.pid)) for n, gw in s.instances.items()}
            side = {}
            if s.balancer is not None:
                side["balancer"] = stack.enter_context(Watch(s.balancer.pid))
            if s.redis is not None:
                side["Redis"] = stack.enter_context(Watch(s.redis.proc.pid))
            result = self.load(s.url + "/v1/messages", s.key, conc)
            after = settle(s.db, before)
        pg_after = cluster.backends_cpu(s.db.backend_pids())  # a connection closed mid-run is not counted
        run = Run(s.label, conc, result)
        if result.failure:
            self.notes.append(f"{s.label} at c={conc}: {result.failure}")
        counts = s.balancer.served_since(offset) if s.balancer else None
        for name, gw in s.instances.items():
            served = after.get(name, (0, 0.0))[0] - before.get(name, (0, 0.0))[0]
            sent, answered = counts.pop(str(gw.port), [0, 0]) if counts is not None else (None, None)
            w = watches[name]
            cpu = w.cpu * 1000 / served if served else None
            share = Share(name, served, sent, answered, cpu, w.cpu, w.peak_rss / 2**20, w.preempted)
            run.shares.append(share)
        if counts:
            run.stray = dict(counts)  # answered by no instance of this setup (`-`: no backend at all)
        run.side_cpu = {k: w.cpu for k, w in side.items()}
        if pg_before or pg_after:
            run.side_cpu["Postgres"] = sum(pg_after[p] - pg_before.get(p, 0.0) for p in pg_after)
        run.key = cluster.key_spend(s.db, hash_key(s.key))
        signers = {n for t in self.setups if t.key == s.key for n in t.instances}
        run.all_rows = sum(n for name, (n, _) in after.items() if name in signers)
        self.warnings(s, run)
        return run

    def idle(self, setups: list[Setup], seconds: float = 3.0) -> str:
        """CPU each instance uses with no requests (its background work: spend writer, journal,
        heartbeats), per second: a fixed cost that every added instance brings."""
        instances = {n: gw for s in setups for n, gw in s.instances.items()}
        with contextlib.ExitStack() as stack:
            watches = {n: stack.enter_context(Watch(gw.proc.pid)) for n, gw in instances.items()}
            time.sleep(seconds)
        return ", ".join(f"{n} {w.cpu * 1000 / seconds:.0f} ms/s" for n, w in watches.items())

    def warnings(self, s: Setup, run: Run) -> None:
        """What the instances logged at warning level or above during the run (Redis down, ...)."""
        for name, gw in s.instances.items():
            lines = _lines(gw)
            new = lines[self.log_seen.get(gw.proc.pid, 0) :]
            self.log_seen[gw.proc.pid] = len(lines)
            if new:
                self.notes.append(
                    f"{run.setup} at c={run.concurrency}: instance {name} logged {len(new)} line(s), "
                    f"e.g. {new[0][:240]}"
                )


def _lines(gw: Gateway) -> list[str]:
    return [line for line in gw.log().splitlines() if line.strip()]


def settle(db, before: dict[str, tuple[int, float]], quiet: float = 1.5, limit: float = 30.0):
    """Spend rows per instance once they stop changing (the writers flush every 0.5 s)."""
    deadline = time.monotonic() + limit
    last, since = cluster.spend_by_instance(db), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = cluster.spend_by_instance(db)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet and now != before:
            break
        elif time.monotonic() - since >= quiet * 4:
            break  # nothing arrived at all
    return last


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.time()
    workdir = tempfile.mkdtemp(prefix="parley-scale-")
    notes: list[str] = []
    runs: list[Run] = []
    meta = meta_of(args, started)
    with contextlib.ExitStack() as stack:
        if args.keep:
            print(f"scale-out: keeping {workdir}", file=sys.stderr)
        else:
            stack.callback(shutil.rmtree, workdir, True)
        bench = Bench(args, workdir, notes)
        try:
            setups = bench.setups = start(bench, stack, meta)
        except Exception:
            notes.append("the scale-out topology could not start: " + _tail())
            setups = []
        if setups:
            meta["idle"] = piece(notes, "the idle measurement", bench.idle, setups)
        for conc in args.concurrency:
            for s in setups:
                try:
                    runs.append(bench.measure(s, conc))
                except Exception:
                    notes.append(f"{s.label} at c={conc}: stopped by an error: {_tail()}")
        text = scale_report.markdown(meta, runs, notes)
        path = report.put_section(args.out, text)
    print(text)
    print(f"scale-out: wrote the scale-out section of {path} in {time.time() - started:.0f} s")
    return 0


def meta_of(args: argparse.Namespace, started: float) -> dict:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "mode": "smoke" if args.smoke else "full",
        "duration": args.duration,
        "upstream": "?",
        "database": "?",
        "redis": "?",
    }


def start(bench: Bench, stack: contextlib.ExitStack, meta: dict) -> list[Setup]:
    """The upstream, the database, Redis, the instances and the balancers; what cannot start is a
    note and the setups that need it are left out."""
    args, workdir, notes = bench.args, bench.workdir, bench.notes
    up = start_upstream(os.path.join(workdir, "upstream"), notes)
    stack.callback(up.stop)
    meta["upstream"] = "nginx (canned bodies)" if up.kind == "nginx" else "parley fake-upstream (no nginx)"
    models = cluster.model_list(up.anthropic)
    setups: list[Setup] = []
    if {"pair", "one-lb", "one", "no-redis"} & set(args.setups):
        setups += start_shared(bench, stack, meta, models)
    if "sqlite" in args.setups:
        db = cluster.Sqlite(os.path.join(workdir, "sqlite-spend.db"))
        config = cluster.gateway_config(models, MASTER, db.url, None)
        gw = bench.instance("S", config, "")
        if gw is not None:
            stack.callback(gw.stop)
            setups.append(Setup("sqlite", gw.url, {"S": gw}, db, new_key(gw.url, "bench-sqlite")))
    order = {name: i for i, name in enumerate(args.setups)}
    return sorted(setups, key=lambda s: order[s.name])


def start_shared(bench: Bench, stack: contextlib.ExitStack, meta: dict, models: list[dict]) -> list[Setup]:
    """Postgres database, Redis, instances A (and B) and the balancers for the shared setups."""
    args, workdir, notes = bench.args, bench.workdir, bench.notes
    db = piece(notes, "Postgres", cluster.Postgres, args.pg)
    if db is None:
        meta["database"] = "Postgres unavailable (see notes)"
        return []
    stack.callback(lambda: piece(notes, "dropping the database", db.drop))
    meta["database"] = f"Postgres, database {db.name} (dropped at the end)"
    redis = None
    if shutil.which("redis-server"):
        redis = piece(notes, "redis-server", RedisServer, free_port())
    else:
        notes.append("redis-server is not installed: the shared setups run without Redis")
    if redis is not None:
        stack.callback(redis.stop)
        meta["redis"] = f"private redis-server on port {redis.port}"
    else:
        meta["redis"] = "none (see notes)"
    config = cluster.gateway_config(models, MASTER, db.url, redis.url if redis else None)
    prefix = f"bench{os.getpid()}"
    wanted = set(args.setups)
    setups = []
    if "no-redis" in wanted:
        lone = cluster.gateway_config(models, MASTER, db.url, None)
        p = bench.instance("P", lone, prefix)
        if p is not None:
            stack.callback(p.stop)
            setups.append(Setup("no-redis", p.url, {"P": p}, db, new_key(p.url, "bench-no-redis")))
    if not wanted - {"no-redis"}:
        return setups
    a = bench.instance("A", config, prefix)
    if a is None:
        return setups
    stack.callback(a.stop)
    key = new_key(a.url, "bench-scale")
    side = {"redis": redis}
    if "one" in wanted:
        setups.append(Setup("one", a.url, {"A": a}, db, key, **side))
    nginx = ensure_tool("nginx", "nginx-light", notes) if wanted & {"pair", "one-lb"} else None
    if nginx is None and wanted & {"pair", "one-lb"}:
        notes.append("nginx is not available: no load-balanced setups")
        return setups
    if "one-lb" in wanted:
        lb = piece(notes, "the balancer for A", cluster.start_balancer, nginx, f"{workdir}/lb-one", [a.port])
        if lb is not None:
            stack.callback(lb.stop)
            setups.append(Setup("one-lb", lb.url, {"A": a}, db, key, balancer=lb, **side))
    if "pair" in wanted:
        b = bench.instance("B", config, prefix)
        if b is not None:
            stack.callback(b.stop)
            ports = [a.port, b.port]
            lb = piece(
                notes, "the balancer for A+B", cluster.start_balancer, nginx, f"{workdir}/lb-pair", ports
            )
            if lb is not None:
                stack.callback(lb.stop)
                setups.append(Setup("pair", lb.url, {"A": a, "B": b}, db, key, balancer=lb, **side))
    return setups


def piece(notes: list[str], what: str, fn, *fn_args):
    """`fn(*fn_args)`, or None and a note when it raises."""
    try:
        return fn(*fn_args)
    except Exception:
        notes.append(f"{what} failed: {_tail()}")
        return None


def new_key(url: str, alias: str, max_budget: float = 1_000_000.0) -> str:
    """A virtual key with a budget, from the admin API."""
    status, body = post_json(
        url + "/key/generate", {"key_alias": alias, "max_budget": max_budget}, {"x-api-key": MASTER}
    )
    if status != 200:
        raise RuntimeError(f"/key/generate answered {status}: {body[:200]!r}")
    import orjson

    return orjson.loads(body)["key"]


def _tail() -> str:
    return " / ".join(traceback.format_exc().strip().splitlines()[-3:])[-600:]


if __name__ == "__main__":
    sys.exit(main())
