"""Features on and off, in the same run: what metrics + tracing and the PII guardrail cost.

Two pairs, each measured on parley at the lowest concurrency (p50: the "added" targets) and at 16
(or the highest; CPU per request and req/s):

- metrics + tracing: the native scenario on `parley` (off) and on `parley+obs`, a second parley
  with `callbacks: [prometheus, otel]` exporting over OTLP to a receiver the bench starts (it
  counts the spans it gets, so export really happens; `/metrics` is scraped at the end);
- PII guardrail: the 10 KB support-ticket prompt on `parley`, without (off) and with
  `"guardrails": ["pii"]` (on).

A run measured first at a step ran 15-25% slower here (docs/performance.md), so each pair runs in
ABBA order (off, on, on, off; one round, off then on, in a smoke run) and each state's figures
sum its runs: CPU per request = CPU / requests, req/s = requests / seconds, p50 = mean of the
runs' p50s. Anything that fails is a note; the suite goes on.
"""

from __future__ import annotations

import contextlib
import sys
import time
import urllib.request
from dataclasses import dataclass, field

import bodies
import load
import report
import scenarios as sc
import targets as tg
from parley.testing.procs import ServerProcess, free_port
from procstats import Watch

OBSERVE = "metrics + tracing (native)"
GUARDRAILS = "PII guardrail (10 KB prompt)"


@dataclass
class Pair:
    feature: str
    off: tuple[tg.Target, bytes]  # (where, body)
    on: tuple[tg.Target, bytes]
    path: str = "/v1/messages"
    headers: dict[str, str] = field(default_factory=lambda: dict(sc.ANTHROPIC_HEADERS))


def concurrencies(args) -> list[int]:
    low, top = min(args.concurrency), max(args.concurrency)
    mid = 16 if 16 in args.concurrency else top
    return sorted({low, mid})


def run_features(bench, systems: list[tg.Target], results: report.Results) -> None:
    """The features phase (`--only features`, or every run without --only); `parley+obs` and its
    receiver are stopped when it ends."""
    only = bench.args.only.split(",") if bench.args.only else None
    if only and "features" not in only:
        return
    parley = next((t for t in systems if t.name == "parley"), None)
    if parley is None:
        results.notes.append("features on/off: not measured (parley did not start)")
        return
    with contextlib.ExitStack() as stack:
        measure_features(bench, parley, results, stack)


def measure_features(bench, parley: tg.Target, results: report.Results, stack) -> None:
    pairs = [guardrail_pair(parley)]
    observed = start_observed(bench, results, stack)
    if observed is not None:
        target, receiver = observed
        native = bodies.small_messages("bench-native")
        pairs.insert(0, Pair(OBSERVE, (parley, native), (target, native)))
    for pair in pairs:
        for conc in concurrencies(bench.args):
            try:
                measure_pair(bench, pair, conc, results)
            except Exception as e:  # a failing pair is a note; the others still run
                results.notes.append(f"{pair.feature} at c={conc}: {type(e).__name__}: {e}"[:600])
    if observed is not None:
        results.notes.append(observed_note(observed[0], receiver, results))


def guardrail_pair(parley: tg.Target) -> Pair:
    return Pair(
        GUARDRAILS,
        (parley, bodies.guardrails_messages("bench-native", on=False)),
        (parley, bodies.guardrails_messages("bench-native")),
    )


def start_observed(bench, results: report.Results, stack) -> tuple[tg.Target, str] | None:
    """`parley+obs` and its OTLP receiver, or None (and a note) when either does not start."""
    if bench.args.observe:
        results.notes.append(
            "features on/off: metrics + tracing not compared (--observe: parley itself is observed)"
        )
        return None
    try:
        port = free_port()
        receiver = ServerProcess(
            [sys.executable, "-m", "parley.testing.otlp", str(port), "--count-only"], port, "/"
        )
        stack.callback(receiver.stop)
        target, _ = tg.start_parley(
            bench.workdir,
            bench.models,
            bench.args.workers,
            results.notes,
            spend=not bench.args.no_spend,
            observe=f"http://127.0.0.1:{port}/v1/traces",
            name="parley+obs",
            limits=bench.args.redis,  # (with --redis, parley's key has a budget and limits too)
        )
        stack.callback(target.stop)
    except Exception as e:
        results.notes.append(f"features on/off: parley+obs did not start ({type(e).__name__}: {e})"[:600])
        return None
    return target, receiver.url


def measure_pair(bench, pair: Pair, conc: int, results: report.Results) -> None:
    order = ["off", "on"] if bench.args.smoke else ["off", "on", "on", "off"]
    runs: dict[str, list[tuple[load.LoadResult, float]]] = {"off": [], "on": []}
    for state in order:
        target, body = getattr(pair, state)
        headers = dict(pair.headers, **target.headers)
        with Watch(target.pid) as watch:
            try:
                result = bench.load(target.url + pair.path, body, headers, conc)
            except Exception as e:
                result = load.failed("load", bench.args.duration, f"failed: {type(e).__name__}: {e}")
        if result.failure:
            results.notes.append(f"{pair.feature} {state} at c={conc}: {result.failure}")
        runs[state].append((result, watch.cpu))
    for state in ("off", "on"):
        results.features.append(summarize(pair.feature, state, conc, runs[state]))


def summarize(feature: str, state: str, conc: int, runs: list) -> report.FeatureRow:
    good = [(r, cpu) for r, cpu in runs if not r.failure and r.requests]
    row = report.FeatureRow(feature, state, conc, runs=len(good), errors=sum(r.errors for r, _ in runs))
    if not good:
        row.failure = next((r.failure for r, _ in runs if r.failure), "no requests served")
        return row
    requests = sum(r.requests for r, _ in good)
    row.requests = requests
    row.rps = requests / sum(r.seconds for r, _ in good)
    row.p50_ms = sum(r.p50_ms for r, _ in good) / len(good)
    row.p99_ms = sum(r.p99_ms for r, _ in good) / len(good)
    row.cpu_ms_per_req = sum(cpu for _, cpu in good) * 1000 / requests
    return row


def observed_note(target: tg.Target, receiver_url: str, results: report.Results) -> str:
    """What the observed gateway exported: spans the receiver counted, and its /metrics."""
    served = sum(r.requests for r in results.features if r.feature == OBSERVE and r.state == "on")
    spans = "?"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the exporter sends in batches, in the background
        spans = _get(receiver_url).split(" ", 1)[0]
        if spans.isdigit() and int(spans) >= 2 * served:
            break
        time.sleep(0.5)
    metrics = _get(target.url + "/metrics")
    series = sum(1 for line in metrics.splitlines() if line.startswith("parley_requests_total{"))
    return (
        f"parley+obs served {served} native requests; the OTLP receiver counted {spans} spans "
        f"(2 per request expected: SERVER + CLIENT); /metrics had {series} parley_requests_total series"
    )


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.read().decode("utf-8", "replace")
    except Exception as e:  # a note says what went wrong; the phase goes on
        return f"? ({type(e).__name__}: {e})"


def judge(results: report.Results, args, verdict) -> None:
    """The issue's two feature targets, from the pairs' rows."""
    low = min(args.concurrency)
    mid = concurrencies(args)[-1]

    def row(feature: str, state: str, conc: int) -> report.FeatureRow | None:
        return next(
            (
                r
                for r in results.features
                if (r.feature, r.state, r.concurrency) == (feature, state, conc) and not r.failure
            ),
            None,
        )

    off, on = row(OBSERVE, "off", mid), row(OBSERVE, "on", mid)
    if off and on and off.cpu_ms_per_req and on.cpu_ms_per_req and off.rps:
        cpu = on.cpu_ms_per_req / off.cpu_ms_per_req - 1
        rps = on.rps / off.rps - 1
        t = f"metrics + tracing on: within 10% of off (native, c={mid})"
        results.targets.append(
            (
                f"{t}: CPU per request",
                f"{off.cpu_ms_per_req:.3f} → {on.cpu_ms_per_req:.3f} ms ({cpu:+.1%})",
                verdict(cpu <= 0.10),
            )
        )
        results.targets.append(
            (f"{t}: req/s", f"{off.rps:.0f} → {on.rps:.0f} ({rps:+.1%})", verdict(rps >= -0.10))
        )
    elif any(r.feature == OBSERVE for r in results.features):
        results.targets.append(("metrics + tracing on: within 10% of off", "a run failed", "not measured"))
    off, on = row(GUARDRAILS, "off", low), row(GUARDRAILS, "on", low)
    if off and on:
        added = on.p50_ms - off.p50_ms
        cpu = (
            f"; CPU {off.cpu_ms_per_req:.3f} → {on.cpu_ms_per_req:.3f} ms/req"
            if off.cpu_ms_per_req and on.cpu_ms_per_req
            else ""
        )
        results.targets.append(
            (
                f"guardrails (PII on a 10 KB prompt): ≤ 1 ms p50 added (c={low})",
                f"p50 {off.p50_ms:.2f} → {on.p50_ms:.2f} ms = {added:+.2f} ms{cpu}",
                verdict(added <= 1.0),
            )
        )
    elif any(r.feature == GUARDRAILS for r in results.features):
        results.targets.append(("guardrails: ≤ 1 ms p50 added", "a run failed", "not measured"))
