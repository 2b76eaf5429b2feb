"""With --redis: the Redis target judged on pairs measured side by side, not on one pair of rows.

One measurement of each target differs by 5-15% between runs on this machine (and which of the two
goes first matters), so a single `parley` row against a single `parley/redis` row cannot settle an
85% line. At the end of the run (after the slow streams, whose RSS they would raise), `rounds`
more pairs of native at the middle concurrency are measured back to back, the order alternating
(Redis second, then first, ...). The verdict is on the median of every pair's ratio (the scenario
rows' own pair included), and each ratio is listed.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import report
import scenarios as sc


@dataclass(frozen=True, slots=True)
class Pair:
    plain: report.Row
    redis: report.Row

    @property
    def ratio(self) -> float:
        return self.redis.rps / self.plain.rps

    @property
    def redis_added_ms(self) -> float | None:
        """The redis-server's CPU per request plus what the gateway's own grew by."""
        p, r = self.plain, self.redis
        if p.cpu_ms_per_req is None or r.cpu_ms_per_req is None or r.redis_cpu_ms_per_req is None:
            return None
        return r.cpu_ms_per_req - p.cpu_ms_per_req + r.redis_cpu_ms_per_req


def _usable(row: report.Row | None) -> bool:
    return row is not None and not row.failure and bool(row.rps)


def run(bench, systems, results: report.Results, mid: int) -> None:
    """`bench.args.redis_rounds` more pairs of native at `mid`, into `results.redis_pairs`."""
    pairs: list[Pair] = results.redis_pairs
    by_name = {t.name: t for t in systems}
    plain, redis = by_name.get("parley"), by_name.get("parley/redis")
    rows = {r.target: r for r in results.rows if r.scenario == "native" and r.concurrency == mid}
    if _usable(rows.get("parley")) and _usable(rows.get("parley/redis")):
        pairs.append(Pair(rows["parley"], rows["parley/redis"]))
    if plain is None or redis is None:
        return
    native = next(s for s in sc.scenarios(bench.up) if s.name == "native")
    redis_first = bench.args.redis_first
    for _ in range(bench.args.redis_rounds):
        redis_first = not redis_first  # (the scenario rows went in the other order)
        order = (redis, plain) if redis_first else (plain, redis)
        measured = {t.name: bench.measure(native, t, mid, None) for t in order}
        a, b = measured["parley"], measured["parley/redis"]
        if _usable(a) and _usable(b):
            pairs.append(Pair(a, b))
        else:
            results.notes.append(f"a Redis round at c={mid} gave no pair: {a.failure or b.failure}")


def judge(pairs: list[Pair], mid: int, verdict) -> tuple[str, str, str] | None:
    """The 85% target on the median of the pairs' ratios; None without a pair."""
    if not pairs:
        return None
    ratios = [p.ratio for p in pairs]
    median = statistics.median(ratios)
    added = [a for a in (p.redis_added_ms for p in pairs) if a is not None]
    each = ", ".join(f"{p.redis.rps:.0f}/{p.plain.rps:.0f} = {p.ratio:.0%}" for p in pairs)
    measured = f"median {median:.0%} of {len(pairs)} pairs ({each})"
    if added:
        measured += f"; Redis added {statistics.median(added):.3f} ms CPU/req (gateway + redis-server)"
    name = f"native with Redis, c={mid}: ≥ 85% of the req/s without Redis (pairs side by side)"
    return name, measured, verdict(median >= 0.85)
