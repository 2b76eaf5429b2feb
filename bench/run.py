"""parley's benchmark suite: one entry point (`make bench`, `make bench-compare`).

    python bench/run.py [--compare] [--smoke] [--workers N] [--duration S] [--concurrency 1,16,64]
                        [--streams 500] [--out DIR] [--no-nginx] [--no-wrk]
    python bench/run.py --scale-out [bench/scaleout.py's options]   # two instances behind nginx

Starts a zero-latency upstream (nginx with canned bodies), two streaming upstreams, the bare aiohttp
forwarder, parley (and with --compare the LiteLLM proxy), drives each scenario with wrk, runs many
concurrent slow streams, and writes RESULTS.md and results.png to --out (default: bench/).
See bench/README.md.
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
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(os.path.dirname(HERE), "src"))

import features  # noqa: E402
import load  # noqa: E402
import report  # noqa: E402
import rounds  # noqa: E402
import scenarios as sc  # noqa: E402
import targets as tg  # noqa: E402
from procstats import Watch  # noqa: E402
from streams import StreamStats, run_streams  # noqa: E402
from upstreams import ensure_tool, start_bare_forwarder, start_stream_upstream, start_upstream  # noqa: E402
from verdicts import judge, middle  # noqa: E402


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--compare", action="store_true", help="also measure the LiteLLM proxy")
    p.add_argument(
        "--scale-out",
        action="store_true",
        help="run bench/scaleout.py instead (two instances behind nginx; the options after it are its own)",
    )
    p.add_argument("--smoke", action="store_true", help="a ~10-second run that only proves the harness")
    p.add_argument("--workers", type=int, default=1, help="parley worker processes (default 1)")
    p.add_argument("--duration", type=float, help="seconds per measurement (default 5, smoke 1)")
    p.add_argument("--concurrency", help="comma-separated connection counts (default 1,16,64)")
    p.add_argument("--streams", type=int, help="concurrent slow streams (default 500, smoke 20)")
    p.add_argument("--stream-events", type=int, help="deltas per slow stream (default 10, smoke 3)")
    p.add_argument("--stream-interval", type=float, help="seconds between deltas (default 0.5, smoke 0.2)")
    p.add_argument(
        "--stream-ramp",
        type=float,
        help="seconds over which the slow streams' starts are spread (default 2, smoke 0.2)",
    )
    p.add_argument("--only", help="comma-separated scenario names to run")
    p.add_argument("--out", default=HERE, help="where RESULTS.md and results.png go (default bench/)")
    p.add_argument("--no-nginx", action="store_true", help="use parley's fake upstream instead of nginx")
    p.add_argument("--no-wrk", action="store_true", help="use the Python load loop instead of wrk")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    p.add_argument("--no-spend", action="store_true", help="run parley without a database")
    p.add_argument(
        "--observe",
        action="store_true",
        help="run parley with Prometheus metrics and OTLP traces on (traces to a loopback receiver)",
    )
    p.add_argument(
        "--baseline-first",
        action="store_true",
        help="measure parley@base before parley at each step (run both orders: position matters)",
    )
    p.add_argument("--wrk", help="the wrk binary to use (default: wrk on PATH, installed if missing)")
    p.add_argument(
        "--load-timeout",
        type=float,
        help="seconds one load run may take before it is killed and recorded as a timeout "
        "(default: its duration + 60)",
    )
    p.add_argument(
        "--granian",
        action="store_true",
        help="also measure parley served by granian instead of uvicorn (granian must be importable)",
    )
    p.add_argument(
        "--redis",
        action="store_true",
        help="also measure parley with Redis (`parley/redis`, a redis-server started on its own port); "
        "every parley key then has a budget and rate limits, so the rows with and without Redis "
        "do the same work",
    )
    p.add_argument("--redis-port", type=int, help="port for the bench's redis-server (default: a free one)")
    p.add_argument(
        "--redis-lease-ms",
        type=int,
        help="router_settings.redis_lease_ms for parley/redis (default: parley's, 1000; 0: every "
        "request asks Redis, no quota leases)",
    )
    p.add_argument(
        "--redis-first",
        action="store_true",
        help="measure parley/redis before parley at each step (position matters: run both orders)",
    )
    p.add_argument(
        "--redis-rounds",
        type=int,
        help="with --redis: pairs of native at c=16 measured back to back after the scenarios, the "
        "order alternating; the 85%% target is judged on the median pair (default 4, smoke 0)",
    )
    p.add_argument(
        "--forwarder-rounds",
        type=int,
        help="pairs of native at c=16, bare forwarder and parley, measured back to back after the "
        "scenarios, the order alternating; the 70%%, 1.5x and 2x targets are judged on the median "
        "pair (default 4, smoke 0)",
    )
    p.add_argument(
        "--baseline",
        metavar="SRC",
        help="also measure parley from another source tree (its src/ directory) as `parley@base`, "
        "in the same run: before/after rows that share the machine's load",
    )
    args = p.parse_args(argv)
    smoke = args.smoke
    args.duration = args.duration or (1.0 if smoke else 5.0)
    args.concurrency = [int(c) for c in (args.concurrency or ("4" if smoke else "1,16,64")).split(",")]
    args.streams = args.streams or (20 if smoke else 500)
    args.stream_events = args.stream_events or (3 if smoke else 10)
    args.stream_interval = args.stream_interval or (0.2 if smoke else 0.5)
    args.stream_ramp = args.stream_ramp if args.stream_ramp is not None else (0.2 if smoke else 2.0)
    args.redis_rounds = args.redis_rounds if args.redis_rounds is not None else (0 if smoke else 4)
    args.forwarder_rounds = (
        args.forwarder_rounds if args.forwarder_rounds is not None else (0 if smoke else 4)
    )
    return args


def probe(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return 0, str(e).encode()


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: str) -> None:
        self.args = args
        self.workdir = workdir
        self.notes: list[str] = []
        self.up = None
        self.slow_url = self.fast_url = ""
        self.models: list[dict] = []
        self.wrk = None if args.no_wrk else (args.wrk or ensure_tool("wrk", "wrk", self.notes))
        if self.wrk is None:
            self.notes.append(
                "NOTE: wrk not used (unavailable, or --no-wrk); load comes from a Python asyncio loop, "
                "which is slower than the systems it measures: requests/s here are the client's limit"
            )

    def load(self, url: str, body: bytes, headers: dict[str, str], conc: int) -> load.LoadResult:
        if self.wrk:
            return load.run_wrk(
                self.wrk,
                os.path.join(self.workdir, "wrk"),
                url,
                body,
                headers,
                conc,
                self.args.duration,
                budget=self.args.load_timeout,
            )
        return load.run_python(url, body, headers, conc, self.args.duration, budget=self.args.load_timeout)

    def measure(
        self, s: sc.Scenario, target: tg.Target | None, conc: int, direct: report.Row | None
    ) -> report.Row:
        if target is None:
            url, body, headers, pid, name = s.direct_url, s.direct_body, s.direct_headers, None, "direct"
        else:
            url, body, name = target.url + s.path, s.body, target.name
            headers, pid = dict(s.headers, **target.headers), target.pid
            if target.name == "bare":
                headers = s.headers
        redis_pid = target.redis_pid if target is not None else None
        with Watch(pid) as watch, Watch(redis_pid) as redis_watch:
            try:
                result = self.load(url, body, headers, conc)
            except Exception as e:  # a crashed load generator is a row, not the end of the suite
                result = load.failed("load", self.args.duration, f"failed: {type(e).__name__}: {e}")
        if result.failure:
            self.notes.append(f"{s.name} on {name} at c={conc}: {result.failure}")
        row = report.Row(
            s.name,
            name,
            conc,
            result.rps,
            result.p50_ms,
            result.p99_ms,
            errors=result.errors,
            requests=result.requests,
            failure=result.failure,
        )
        if pid is not None and result.requests:
            row.cpu_ms_per_req = watch.cpu * 1000 / result.requests
            row.peak_rss_mb = watch.peak_rss / 2**20
            if redis_pid is not None:
                row.redis_cpu_ms_per_req = redis_watch.cpu * 1000 / result.requests
        if direct is not None and not result.failure and not direct.failure:
            row.added_p50_ms = row.p50_ms - direct.p50_ms
            row.added_p99_ms = row.p99_ms - direct.p99_ms
        return row

    def usable(self, s: sc.Scenario, target: tg.Target) -> bool:
        if target.name == "bare" and not s.bare:
            return False
        headers = s.headers if target.name == "bare" else dict(s.headers, **target.headers)
        status, body = probe(target.url + s.path, s.body, headers)
        if status == 200:
            return True
        why = s.skip_when.get(status) if target.name.startswith("parley") else None
        target.skips[s.name] = why or f"answered {status}: {body[:160].decode('utf-8', 'replace')}"
        self.notes.append(f"{s.name} on {target.name}: skipped, {target.skips[s.name]}")
        return False


def ttft(url: str, body: bytes, headers: dict[str, str], n: int) -> float:
    times = []
    for _ in range(n):
        stats = run_streams(url, body, headers, 1, timeout=30)
        times += stats.ttft_ms
    times.sort()
    return times[len(times) // 2] if times else float("nan")


def main(argv: list[str] | None = None) -> int:
    """Every phase is bounded and a failing one becomes a note: the table is always written."""
    argv = sys.argv[1:] if argv is None else argv
    if "--scale-out" in argv:
        import scaleout

        return scaleout.main([a for a in argv if a != "--scale-out"])
    args = parse(argv)
    started = time.time()
    workdir = tempfile.mkdtemp(prefix="parley-bench-")
    results = report.Results(meta_of(args, started), notes=[])
    with contextlib.ExitStack() as stack:
        if not args.keep:
            stack.callback(shutil.rmtree, workdir, True)
        else:
            print(f"bench: keeping {workdir}", file=sys.stderr)
        bench = Bench(args, workdir)
        results.notes = bench.notes
        try:
            systems = start_systems(bench, stack, results)
        except Exception:
            results.notes.append("the suite could not start its upstreams: " + _tail())
            systems = []
        if systems:
            phase(results, "scenarios", run_scenarios, bench, bench.up, systems, results)
            phase(results, "features on/off", features.run_features, bench, systems, results)
            phase(results, "slow streams", run_slow_streams, bench, systems, results)
            # last: a minute more of native load leaves each gateway larger (the in-process rpm log
            # keeps a minute of requests), which the streams' RSS would see
            phase(results, "rounds", rounds.run, bench, systems, results, middle(args))
        phase(results, "targets", judge, results, args)
        text = report.write(results, args.out)
    print(text)
    print(f"bench: wrote {os.path.join(args.out, 'RESULTS.md')} in {time.time() - started:.0f} s")
    return 0


def _tail() -> str:
    return " / ".join(traceback.format_exc().strip().splitlines()[-3:])[-600:]


def phase(results: report.Results, name: str, fn, *fn_args) -> None:
    try:
        fn(*fn_args)
    except Exception:
        results.notes.append(f"{name}: stopped by an error, rows so far kept: {_tail()}")


def meta_of(args: argparse.Namespace, started: float) -> dict:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "mode": "smoke" if args.smoke else "full",
        "duration": args.duration,
        "upstream": "?",
        "load": "?",
        "workers": args.workers,
        "auth": "?",
        "observability": "metrics and traces on (--observe)" if args.observe else "off",
        "spend": "off (--no-spend)"
        if args.no_spend
        else "on (database_url set; recorded if this build has the spend feature)",
        "litellm": "not measured (run `make bench-compare`)",
        "stream_events": args.stream_events,
        "stream_interval": args.stream_interval,
        "stream_ramp": args.stream_ramp,
    }


def start_systems(bench: Bench, stack: contextlib.ExitStack, results: report.Results) -> list[tg.Target]:
    """The upstreams, then each system under test; a system that fails to start is a note."""
    args, workdir, notes, meta = bench.args, bench.workdir, bench.notes, results.meta
    up = start_upstream(os.path.join(workdir, "nginx"), notes, allow_nginx=not args.no_nginx)
    stack.callback(up.stop)
    bench.up = up
    slow = start_stream_upstream(workdir, args.stream_events, args.stream_interval)
    stack.callback(slow.stop)
    fast = start_stream_upstream(workdir, 3, 0.0)
    stack.callback(fast.stop)
    bench.slow_url, bench.fast_url = slow.url, fast.url
    nginx = up.kind == "nginx"
    meta["upstream"] = (
        "nginx (nginx-light, canned bodies)" if nginx else "parley fake-upstream (nginx not used)"
    )
    meta["load"] = (
        f"wrk ({'1 thread' if max(args.concurrency) < 8 else '1-2 threads'})"
        if bench.wrk
        else "Python asyncio loop (wrk not used)"
    )
    models = bench.models = tg.model_list(up, slow.url, fast.url)
    systems: list[tg.Target] = []
    try:
        bare_proc = start_bare_forwarder(workdir, up)
        stack.callback(bare_proc.stop)
        systems.append(tg.Target("bare", bare_proc.url, {}, bare_proc))
    except Exception:
        notes.append("the bare forwarder did not start: " + _tail())
    traces = tg.start_traces_receiver(stack) if args.observe else None
    systems += tg.start_parleys(args, workdir, notes, stack, meta, models, traces)
    if args.granian:
        gran = tg.start_parley_granian(workdir, models, notes, spend=not args.no_spend)
        if gran is not None:
            stack.callback(gran.stop)
            systems.append(gran)
    if args.compare:
        lite = tg.start_litellm(workdir, models, notes)
        if lite is not None:
            stack.callback(lite.stop)
            systems.append(lite)
            meta["litellm"] = (
                f"litellm[proxy] {tg.litellm_version()}, 1 worker, master key, no database "
                "(its spend logs need Postgres + Prisma)"
            )
        else:
            meta["litellm"] = "could not be started (see notes)"
    return systems


def run_scenarios(bench: Bench, up, systems: list[tg.Target], results: report.Results) -> None:
    only = set(bench.args.only.split(",")) if bench.args.only else None
    for s in sc.scenarios(up):
        if only and s.name not in only:
            continue
        status, body = probe(s.direct_url, s.direct_body, s.direct_headers)
        if status != 200:
            results.notes.append(f"{s.name}: skipped, the upstream itself answered {status}: {body[:120]!r}")
            continue
        usable = [t for t in systems if bench.usable(s, t)]
        if not usable:
            continue
        for conc in bench.args.concurrency:
            direct = bench.measure(s, None, conc, None)
            results.rows.append(direct)
            for target in usable:
                results.rows.append(bench.measure(s, target, conc, direct))
        if s.name == "native-stream":
            phase(results, "time to first token", add_ttft, bench, usable, results)


def add_ttft(bench: Bench, usable: list[tg.Target], results: report.Results) -> None:
    """Time to first token at low load, through the fast streaming upstream (3 deltas, no pauses)."""
    n = 5 if bench.args.smoke else 30
    body = sc.fast_stream_body()
    values = {"direct": ttft(bench.fast_url + "/v1/messages", body, sc.ANTHROPIC_HEADERS, n)}
    for t in usable:
        if t.name != "bare":  # the bare forwarder only knows the nginx upstreams
            values[t.name] = ttft(t.url + "/v1/messages", body, dict(sc.ANTHROPIC_HEADERS, **t.headers), n)
    for r in results.rows:
        if r.scenario == "native-stream":
            r.ttft_ms = values.get(r.target)


def run_slow_streams(bench: Bench, systems: list[tg.Target], results: report.Results) -> None:
    """Many concurrent slow streams: direct to the streaming upstream, then through each gateway."""
    if bench.args.only and "streams" not in bench.args.only.split(","):
        return
    n = bench.args.streams
    body = sc.slow_stream_body()
    expected = bench.args.stream_events
    direct = None
    for t in [None] + [t for t in systems if t.name != "bare"]:
        url = (bench.slow_url if t is None else t.url) + "/v1/messages"
        headers = sc.ANTHROPIC_HEADERS if t is None else dict(sc.ANTHROPIC_HEADERS, **t.headers)
        with Watch(None if t is None else t.pid) as watch:
            try:
                stats = run_streams(
                    url,
                    body,
                    headers,
                    n,
                    timeout=expected * bench.args.stream_interval + 120,
                    ramp=bench.args.stream_ramp,
                )
            except Exception as e:  # bounded by the client timeout; anything else is a row too
                stats = StreamStats(n, 0, errors=[f"{type(e).__name__}: {e}"])
        d = stats.chunk_delay_ms
        row = report.StreamRow(
            "direct" if t is None else t.name,
            n,
            stats.peak_open,
            stats.completed,
            stats.pct(stats.ttft_ms, 50),
            stats.pct(d, 50),
            stats.pct(d, 99),
            max(d) if d else float("nan"),
            None,
            None,
            watch.peak_rss / 2**20 if t is not None else None,
            len(d),
            len(stats.errors),
        )
        if stats.errors:
            results.notes.append(
                f"{n} streams on {row.target}: {len(stats.errors)} failed, e.g. {stats.errors[0][:200]}"
            )
        if len(d) != n * expected and not stats.errors:
            results.notes.append(
                f"{n} streams on {row.target}: {len(d)} deltas arrived, expected {n * expected}"
            )
        if direct is None:
            direct = row
        else:
            row.added_p50_ms = row.delay_p50_ms - direct.delay_p50_ms
            row.added_p99_ms = row.delay_p99_ms - direct.delay_p99_ms
        results.streams.append(row)


if __name__ == "__main__":
    sys.exit(main())
