"""issue 22's targets judged on a run's rows (`bench/run.py`'s last phase): each a line of the
targets table with what was measured and the verdict; a smoke run only shows the harness works."""

from __future__ import annotations

import argparse

import features
import report
import rounds


def _row(results: report.Results, scenario: str, target: str, conc: int) -> report.Row | None:
    return next(
        (r for r in results.rows if r.scenario == scenario and r.target == target and r.concurrency == conc),
        None,
    )


def middle(args: argparse.Namespace) -> int:
    """The concurrency the targets are judged at."""
    return 16 if 16 in args.concurrency else max(args.concurrency)


def judge(results: report.Results, args: argparse.Namespace) -> None:
    """Compare with issue 22's targets; a smoke run only shows the harness works."""
    verdict = (lambda ok: "met" if ok else "NOT met") if not args.smoke else (lambda ok: "(smoke run)")
    t = results.targets
    mid = middle(args)
    if results.forwarder_pairs:  # the scenario rows' pair and the rounds': their medians decide
        t.extend(rounds.judge_forwarder(results.forwarder_pairs, mid, verdict, results.forwarder_key))
    elif _row(results, "native", "parley", mid) or _row(results, "native", "bare", mid):
        t.append((f"native, c={mid}: parley against the bare forwarder", "a run failed", "not measured"))
    low = min(args.concurrency)
    r = _row(results, "native", "parley", low)
    if r and r.added_p50_ms is not None:
        t.append(
            (
                f"added p50 at concurrency {low} ≤ 0.4 ms",
                f"p50 +{r.added_p50_ms:.2f} ms (p99 +{r.added_p99_ms:.2f} ms)",
                verdict(r.added_p50_ms <= 0.4),
            )
        )
    features.judge(results, args, verdict)
    judge_streams(results, args, verdict)
    judge_litellm(results, mid, verdict)
    judge_redis(results, args, mid, verdict)
    judge_baseline(results, args)


def judge_streams(results: report.Results, args: argparse.Namespace, verdict) -> None:
    s = next((s for s in results.streams if s.target == "parley"), None)
    if not s:
        return
    ok = (
        s.completed == s.streams
        and s.added_p99_ms is not None
        and s.added_p99_ms <= 5
        and s.chunks == s.streams * args.stream_events
    )
    added = (
        f"p50 {s.added_p50_ms:+.2f} ms, p99 {s.added_p99_ms:+.2f} ms, "
        if s.added_p50_ms is not None and s.added_p99_ms is not None
        else ""
    )
    results.targets.append(
        (
            f"{s.streams} concurrent streams: no added per-chunk delay (p99 ≤ +5 ms, every "
            "delta arrives on its own)",
            f"{added}{s.completed}/{s.streams} completed, {s.chunks} deltas",
            verdict(ok),
        )
    )
    results.targets.append(
        (
            "  … and RSS ≤ 120 MB for one worker",
            f"{_f0(s.peak_rss_mb)} MB",
            verdict(s.peak_rss_mb is not None and s.peak_rss_mb <= 120),
        )
    )


def _f0(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def judge_litellm(results: report.Results, mid: int, verdict) -> None:
    for scenario, factor in (("native", 60), ("messages→openai", 40), ("chat→anthropic", 40)):
        p, lite = _row(results, scenario, "parley", mid), _row(results, scenario, "litellm", mid)
        name = f"{scenario}: ≥ {factor}× LiteLLM's req/s (concurrency {mid})"
        if p and lite and lite.rps and not p.failure:
            ratio = p.rps / lite.rps
            results.targets.append(
                (name, f"{p.rps:.0f} vs {lite.rps:.1f} req/s = {ratio:.1f}×", verdict(ratio >= factor))
            )
        elif lite:
            results.targets.append((name, f"LiteLLM {lite.rps:.1f} req/s; parley: see notes", "not measured"))


def judge_redis(results: report.Results, args: argparse.Namespace, mid: int, verdict) -> None:
    """With --redis: each build with Redis against itself without, per scenario and concurrency;
    native at concurrency `mid` against the 85% target."""
    if not args.redis:
        return
    for r in results.rows:
        if not r.target.endswith("/redis") or r.failure:
            continue
        plain = _row(results, r.scenario, r.target.removesuffix("/redis"), r.concurrency)
        if plain is None or plain.failure or not plain.rps:
            continue
        ratio = r.rps / plain.rps
        cpu = (
            f"; CPU {r.cpu_ms_per_req:.3f} vs {plain.cpu_ms_per_req:.3f} ms/req "
            f"({r.cpu_ms_per_req - plain.cpu_ms_per_req:+.3f})"
            if r.cpu_ms_per_req and plain.cpu_ms_per_req
            else ""
        )
        if r.redis_cpu_ms_per_req is not None:
            cpu += f"; redis-server {r.redis_cpu_ms_per_req:.3f} ms/req"
        measured = f"{r.rps:.0f} vs {plain.rps:.0f} req/s = {ratio:.0%}{cpu}"
        name = f"{r.target} vs {plain.target}: {r.scenario}, c={r.concurrency}"
        results.targets.append((name, measured, "(comparison)"))
    target = rounds.judge_redis(results.redis_pairs, mid, verdict)
    if target is not None:
        results.targets.append(target)


def judge_baseline(results: report.Results, args: argparse.Namespace) -> None:
    """With --baseline: this build against the other one, per scenario at each concurrency."""
    if not args.baseline:
        return
    for r in results.rows:
        if r.target not in ("parley", "parley/redis") or r.failure:
            continue
        base = _row(results, r.scenario, r.target.replace("parley", "parley@base", 1), r.concurrency)
        if base is None or base.failure or not base.rps:
            continue
        cpu = (
            f", CPU {base.cpu_ms_per_req:.3f} → {r.cpu_ms_per_req:.3f} ms/req"
            if r.cpu_ms_per_req and base.cpu_ms_per_req
            else ""
        )
        results.targets.append(
            (
                f"this build vs parley@base: {r.scenario}{' with Redis' if '/' in r.target else ''}, "
                f"c={r.concurrency}",
                f"{base.rps:.0f} → {r.rps:.0f} req/s ({r.rps / base.rps - 1:+.0%}), "
                f"p99 {base.p99_ms:.2f} → {r.p99_ms:.2f} ms{cpu}",
                "(comparison)",
            )
        )
