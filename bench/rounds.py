"""Targets judged on pairs measured side by side, not on one pair of rows.

One measurement of a target differs by 5-20% between runs on this machine (and which of the two
goes first matters), so one `parley` row against one `bare` row cannot settle a 70% or 1.5× line,
nor one `parley/redis` row against one `parley` row an 85% line. At the end of the run (after the
slow streams, whose RSS they would raise) `rounds` more pairs of native at the middle concurrency
are measured back to back, the order alternating. Each verdict is on the median of every pair's
ratio (the scenario rows' own pair included), and each pair is listed:

- `--forwarder-rounds`: parley against the bare forwarder (req/s, CPU per request, p99), with
  issue 22's setup (a key with a budget): with `--redis`, whose keys have limits too, on a second
  key with a budget only, in the rounds alone (one more round instead of the scenario rows' pair);
- `--redis-rounds` (with --redis): parley with Redis against parley without.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import report
import scenarios as sc

Verdict = Callable[[bool], str]


@dataclass(frozen=True, slots=True)
class Pair:
    base: report.Row  # the reference: the bare forwarder, or parley without Redis
    other: report.Row  # parley, or parley with Redis

    @property
    def ratio(self) -> float:
        return self.other.rps / self.base.rps

    @property
    def cpu_ratio(self) -> float | None:
        b, o = self.base.cpu_ms_per_req, self.other.cpu_ms_per_req
        return o / b if b and o else None

    @property
    def p99_ratio(self) -> float:
        return self.other.p99_ms / self.base.p99_ms if self.base.p99_ms else float("inf")

    @property
    def redis_added_ms(self) -> float | None:
        """The redis-server's CPU per request plus what the gateway's own grew by."""
        p, r = self.base, self.other
        if p.cpu_ms_per_req is None or r.cpu_ms_per_req is None or r.redis_cpu_ms_per_req is None:
            return None
        return r.cpu_ms_per_req - p.cpu_ms_per_req + r.redis_cpu_ms_per_req


def _usable(row: report.Row | None) -> bool:
    return row is not None and not row.failure and bool(row.rps)


def run_pairs(
    bench, systems, results: report.Results, mid: int, names: tuple[str, str], rounds: int, other_first: bool
) -> list[Pair]:
    """The scenario rows' pair of `names` (base, other) at `mid`, then `rounds` more measured back
    to back, the order alternating (`other_first`: how the scenario rows went)."""
    pairs: list[Pair] = []
    by_name = {t.name: t for t in systems}
    base, other = by_name.get(names[0]), by_name.get(names[1])
    if other is not None and names[0] == "bare" and other.budget_headers is not None:
        # the issue's setup (key + budget), not the scenario rows' key with limits: rounds only
        other = dataclasses.replace(other, headers=other.budget_headers)
        rounds += 1
        results.forwarder_key = "key with a budget"
    else:
        rows = {r.target: r for r in results.rows if r.scenario == "native" and r.concurrency == mid}
        if _usable(rows.get(names[0])) and _usable(rows.get(names[1])):
            pairs.append(Pair(rows[names[0]], rows[names[1]]))
    if base is None or other is None:
        return pairs
    native = next(s for s in sc.scenarios(bench.up) if s.name == "native")
    for _ in range(rounds):
        other_first = not other_first
        order = (other, base) if other_first else (base, other)
        measured = {t.name: bench.measure(native, t, mid, None) for t in order}
        a, b = measured[names[0]], measured[names[1]]
        if _usable(a) and _usable(b):
            pairs.append(Pair(a, b))
        else:
            results.notes.append(
                f"a round of {names[1]} vs {names[0]} at c={mid} gave no pair: {a.failure or b.failure}"
            )
    return pairs


def run(bench, systems, results: report.Results, mid: int) -> None:
    """The forwarder's pairs (and with --redis the Redis pairs) into `results`; none when the
    native scenario was left out (`--only`)."""
    args = bench.args
    if args.only and "native" not in args.only.split(","):
        return
    results.forwarder_pairs = run_pairs(
        bench, systems, results, mid, ("bare", "parley"), args.forwarder_rounds, False
    )
    if args.redis:
        results.redis_pairs = run_pairs(
            bench, systems, results, mid, ("parley", "parley/redis"), args.redis_rounds, args.redis_first
        )


def _each(pairs: list[Pair], value: Callable[[Pair], str]) -> str:
    return ", ".join(value(p) for p in pairs)


def _rps(p: Pair) -> str:
    return f"{p.other.rps:.0f}/{p.base.rps:.0f} = {p.ratio:.0%}"


def judge_forwarder(
    pairs: list[Pair], mid: int, verdict: Verdict, key: str = ""
) -> list[tuple[str, str, str]]:
    """The 70% req/s, 1.5× CPU and 2× p99 targets on the medians of the pairs' ratios (`key`:
    parley's key in them, named when not the scenario rows' own)."""
    if not pairs:
        return []
    n = len(pairs)
    by = f", {key}" if key else ""
    rps = statistics.median(p.ratio for p in pairs)
    out = [
        (
            f"native, 1 worker, c={mid}{by}: ≥ 70% of the bare forwarder's req/s (pairs side by side)",
            f"median {rps:.0%} of {n} pairs ({_each(pairs, _rps)})",
            verdict(rps >= 0.7),
        )
    ]
    p99 = statistics.median(p.p99_ratio for p in pairs)
    out.append(
        (
            f"native, c={mid}{by}: p99 ≤ 2× the bare forwarder's (pairs side by side)",
            f"median {p99:.2f}× of {n} pairs ({_each(pairs, lambda p: f'{p.p99_ratio:.2f}×')})",
            verdict(p99 <= 2),
        )
    )
    cpus = [c for c in (p.cpu_ratio for p in pairs) if c is not None]
    if cpus:
        cpu = statistics.median(cpus)
        each = _each(
            pairs, lambda p: f"{p.other.cpu_ms_per_req or 0:.3f}/{p.base.cpu_ms_per_req or 0:.3f} ms"
        )
        out.append(
            (
                f"native, c={mid}{by}: CPU per request ≤ 1.5× the bare forwarder's (pairs side by side)",
                f"median {cpu:.2f}× of {len(cpus)} pairs ({each})",
                verdict(cpu <= 1.5),
            )
        )
    return out


def judge_redis(pairs: list[Pair], mid: int, verdict: Verdict) -> tuple[str, str, str] | None:
    """The 85% target on the median of the pairs' ratios; None without a pair."""
    if not pairs:
        return None
    median = statistics.median(p.ratio for p in pairs)
    added = [a for a in (p.redis_added_ms for p in pairs) if a is not None]
    measured = f"median {median:.0%} of {len(pairs)} pairs ({_each(pairs, _rps)})"
    if added:
        measured += f"; Redis added {statistics.median(added):.3f} ms CPU/req (gateway + redis-server)"
    name = f"native with Redis, c={mid}: ≥ 85% of the req/s without Redis (pairs side by side)"
    return name, measured, verdict(median >= 0.85)
