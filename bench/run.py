"""parley's benchmark suite: one entry point (`make bench`, `make bench-compare`).

    python bench/run.py [--compare] [--smoke] [--workers N] [--duration S] [--concurrency 1,16,64]
                        [--streams 500] [--out DIR] [--no-nginx] [--no-wrk]

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
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(os.path.dirname(HERE), "src"))

import load  # noqa: E402
import report  # noqa: E402
import scenarios as sc  # noqa: E402
import targets as tg  # noqa: E402
from parley.testing.procs import ServerProcess, free_port  # noqa: E402
from procstats import Watch  # noqa: E402
from streams import run_streams  # noqa: E402
from upstreams import ensure_tool, start_bare_forwarder, start_stream_upstream, start_upstream  # noqa: E402


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--compare", action="store_true", help="also measure the LiteLLM proxy")
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
    args = p.parse_args(argv)
    smoke = args.smoke
    args.duration = args.duration or (1.0 if smoke else 5.0)
    args.concurrency = [int(c) for c in (args.concurrency or ("4" if smoke else "1,16,64")).split(",")]
    args.streams = args.streams or (20 if smoke else 500)
    args.stream_events = args.stream_events or (3 if smoke else 10)
    args.stream_interval = args.stream_interval or (0.2 if smoke else 0.5)
    args.stream_ramp = args.stream_ramp if args.stream_ramp is not None else (0.2 if smoke else 2.0)
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
        self.wrk = None if args.no_wrk else ensure_tool("wrk", "wrk", self.notes)
        if self.wrk is None:
            self.notes.append(
                "NOTE: wrk not used (unavailable, or --no-wrk); load comes from a Python asyncio loop, "
                "which is slower than the systems it measures: requests/s here are the client's limit"
            )

    def load(self, url: str, body: bytes, headers: dict[str, str], conc: int) -> load.LoadResult:
        if self.wrk:
            return load.run_wrk(
                self.wrk, os.path.join(self.workdir, "wrk"), url, body, headers, conc, self.args.duration
            )
        return load.run_python(url, body, headers, conc, self.args.duration)

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
        with Watch(pid) as watch:
            result = self.load(url, body, headers, conc)
        row = report.Row(
            s.name,
            name,
            conc,
            result.rps,
            result.p50_ms,
            result.p99_ms,
            errors=result.errors,
            requests=result.requests,
        )
        if pid is not None and result.requests:
            row.cpu_ms_per_req = watch.cpu * 1000 / result.requests
            row.peak_rss_mb = watch.peak_rss / 2**20
        if direct is not None:
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
        why = s.skip_when.get(status) if target.name == "parley" else None
        target.skips[s.name] = why or f"answered {status}: {body[:160].decode('utf-8', 'replace')}"
        self.notes.append(f"{s.name} on {target.name}: skipped, {target.skips[s.name]}")
        return False


def ttft(url: str, body: bytes, headers: dict[str, str], n: int) -> float:
    times = []
    for _ in range(n):
        stats = run_streams(url, body, headers, 1)
        times += stats.ttft_ms
    times.sort()
    return times[len(times) // 2] if times else float("nan")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.time()
    workdir = tempfile.mkdtemp(prefix="parley-bench-")
    with contextlib.ExitStack() as stack:
        if not args.keep:
            stack.callback(shutil.rmtree, workdir, True)
        else:
            print(f"bench: keeping {workdir}", file=sys.stderr)
        bench = Bench(args, workdir)
        notes = bench.notes
        up = start_upstream(os.path.join(workdir, "nginx"), notes, allow_nginx=not args.no_nginx)
        stack.callback(up.stop)
        slow = start_stream_upstream(workdir, args.stream_events, args.stream_interval)
        stack.callback(slow.stop)
        fast = start_stream_upstream(workdir, 3, 0.0)
        stack.callback(fast.stop)
        bench.slow_url, bench.fast_url = slow.url, fast.url
        models = tg.model_list(up, slow.url, fast.url)
        systems: list[tg.Target] = []
        bare_proc = start_bare_forwarder(workdir, up)
        stack.callback(bare_proc.stop)
        systems.append(tg.Target("bare", bare_proc.url, {}, bare_proc))
        traces = None
        if args.observe:
            port = free_port()
            receiver = ServerProcess(
                [sys.executable, "-m", "parley.testing.otlp", str(port), "--count-only"], port, "/"
            )
            stack.callback(receiver.stop)
            traces = f"http://127.0.0.1:{port}/v1/traces"
        parley, info = tg.start_parley(
            workdir, models, args.workers, notes, spend=not args.no_spend, observe=traces
        )
        stack.callback(parley.stop)
        systems.append(parley)
        litellm_desc = "not measured (run `make bench-compare`)"
        if args.compare:
            lite = tg.start_litellm(workdir, models, notes)
            if lite is not None:
                stack.callback(lite.stop)
                systems.append(lite)
                litellm_desc = (
                    f"litellm[proxy] {tg.litellm_version()}, 1 worker, master key, no database "
                    "(its spend logs need Postgres + Prisma)"
                )
            else:
                litellm_desc = "could not be started (see notes)"
        meta = {
            "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}",
            "mode": "smoke" if args.smoke else "full",
            "duration": args.duration,
            "upstream": "nginx (nginx-light, canned bodies)"
            if up.kind == "nginx"
            else "parley fake-upstream (nginx not used)",
            "load": f"wrk ({'1 thread' if max(args.concurrency) < 8 else '1-2 threads'})"
            if bench.wrk
            else "Python asyncio loop (wrk not used)",
            "workers": args.workers,
            "auth": info["auth"],
            "observability": "metrics and traces on (--observe)" if args.observe else "off",
            "spend": "off (--no-spend)"
            if args.no_spend
            else "on (database_url set; recorded if this build has the spend feature)",
            "litellm": litellm_desc,
            "stream_events": args.stream_events,
            "stream_interval": args.stream_interval,
            "stream_ramp": args.stream_ramp,
        }
        results = report.Results(meta, notes=notes)
        run_scenarios(bench, up, systems, results)
        run_slow_streams(bench, systems, results)
        judge(results, args)
        text = report.write(results, args.out)
    print(text)
    print(f"bench: wrote {os.path.join(args.out, 'RESULTS.md')} in {time.time() - started:.0f} s")
    return 0


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
            add_ttft(bench, usable, results)


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
            stats = run_streams(
                url,
                body,
                headers,
                n,
                timeout=expected * bench.args.stream_interval + 120,
                ramp=bench.args.stream_ramp,
            )
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


def _row(results: report.Results, scenario: str, target: str, conc: int) -> report.Row | None:
    return next(
        (r for r in results.rows if r.scenario == scenario and r.target == target and r.concurrency == conc),
        None,
    )


def _best_rps(results: report.Results, scenario: str, target: str) -> report.Row | None:
    rows = [r for r in results.rows if r.scenario == scenario and r.target == target]
    return max(rows, key=lambda r: r.rps) if rows else None


def judge(results: report.Results, args: argparse.Namespace) -> None:
    """Compare with the issue's targets; a smoke run only shows the harness works."""
    verdict = (lambda ok: "met" if ok else "NOT met") if not args.smoke else (lambda ok: "(smoke run)")
    t = results.targets
    p, b = _best_rps(results, "native", "parley"), _best_rps(results, "native", "bare")
    if p and b:
        ratio = p.rps / b.rps
        t.append(
            (
                "native, 1 worker: ≥ 60% of the bare forwarder's req/s",
                f"{p.rps:.0f} vs {b.rps:.0f} req/s (best concurrency each) = {ratio:.0%}",
                verdict(ratio >= 0.6),
            )
        )
    low = min(args.concurrency)
    r = _row(results, "native", "parley", low)
    if r and r.added_p50_ms is not None:
        t.append(
            (
                f"added latency at concurrency {low}: p50 ≤ 1 ms, p99 ≤ 5 ms",
                f"p50 +{r.added_p50_ms:.2f} ms, p99 +{r.added_p99_ms:.2f} ms",
                verdict(r.added_p50_ms <= 1 and r.added_p99_ms <= 5),
            )
        )
    s = next((s for s in results.streams if s.target == "parley"), None)
    if s:
        ok = (
            s.completed == s.streams
            and s.added_p99_ms is not None
            and s.added_p99_ms <= 5
            and s.chunks == s.streams * args.stream_events
        )
        t.append(
            (
                f"{s.streams} concurrent streams: no added per-chunk delay (p99 ≤ +5 ms, every "
                "delta arrives on its own)",
                f"p50 {s.added_p50_ms:+.2f} ms, p99 {s.added_p99_ms:+.2f} ms, "
                f"{s.completed}/{s.streams} completed, {s.chunks} deltas",
                verdict(ok),
            )
        )
        t.append(
            (
                "  … and RSS ≤ 120 MB for one worker",
                f"{s.peak_rss_mb:.0f} MB",
                verdict(s.peak_rss_mb is not None and s.peak_rss_mb <= 120),
            )
        )
    for scenario, factor in (("native", 60), ("messages→openai", 30), ("chat→anthropic", 30)):
        p, lite = _row(results, scenario, "parley", 16), _row(results, scenario, "litellm", 16)
        if p and lite and lite.rps:
            ratio = p.rps / lite.rps
            t.append(
                (
                    f"{scenario}: ≥ {factor}× LiteLLM's req/s (concurrency 16)",
                    f"{p.rps:.0f} vs {lite.rps:.1f} req/s = {ratio:.1f}×",
                    verdict(ratio >= factor),
                )
            )
        elif lite and not p:
            t.append(
                (
                    f"{scenario}: ≥ {factor}× LiteLLM's req/s (concurrency 16)",
                    f"LiteLLM {lite.rps:.1f} req/s; parley skipped this scenario (see notes)",
                    "not measured",
                )
            )


if __name__ == "__main__":
    sys.exit(main())
