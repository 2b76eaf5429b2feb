"""The scale-out run's measurements, its spend check and its section of RESULTS.md."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from load import LoadResult

SIDES = ("balancer", "Postgres", "Redis")  # processes besides the gateways, CPU per request each


@dataclass
class Share:
    """One instance's part of a run."""

    instance: str
    served: int  # its own count: the spend rows it signed during the run
    sent: int | None  # the balancer's count of requests it sent there (None: no balancer)
    answered: int | None  # ... of those, the ones answered (the rest: the client left first)
    cpu_ms: float | None  # CPU ms per request it served
    cpu_s: float
    peak_rss_mb: float
    preempted: int = 0  # involuntary context switches: the core was taken away mid-work


@dataclass
class Run:
    setup: str
    concurrency: int
    result: LoadResult
    shares: list[Share] = field(default_factory=list)
    side_cpu: dict[str, float] = field(default_factory=dict)  # seconds, by SIDES name
    stray: dict[str, list[int]] = field(default_factory=dict)  # balancer lines for no instance of the run
    key: tuple[float, int, float] | None = None  # key's spend, its rows, the sum of their spend
    all_rows: int = 0  # spend rows in the database after the run, of the instances using this key

    @property
    def served(self) -> int:
        return sum(s.served for s in self.shares)

    def per_request(self, seconds: float | None) -> float | None:
        return seconds * 1000 / self.served if seconds is not None and self.served else None

    @property
    def gateway_cpu_ms(self) -> float | None:
        return self.per_request(sum(s.cpu_s for s in self.shares))

    @property
    def total_cpu_ms(self) -> float | None:
        return self.per_request(sum(s.cpu_s for s in self.shares) + sum(self.side_cpu.values()))

    def check(self) -> tuple[bool | None, str]:
        """Spend rows against requests served, and the key's spend against the sum of its rows."""
        if self.result.failure:
            return None, "not checked (the load run failed)"
        problems = []
        if any(s.sent is not None for s in self.shares):
            for s in self.shares:  # a request the client left mid-way may or may not have a row
                if not (s.answered or 0) <= s.served <= (s.sent or 0):
                    problems.append(f"{s.instance}: {s.served} rows for {s.answered}-{s.sent} requests")
            if self.stray:
                problems.append(f"balancer lines for no instance: {self.stray}")
            answered = sum(s.answered or 0 for s in self.shares)
            left = sum((s.sent or 0) - (s.answered or 0) for s in self.shares)
            served = (
                f"rows {self.served} = {answered} answered + {self.served - answered} of {left} left by wrk"
            )
        else:
            done, conc = self.result.requests, self.concurrency
            if not done <= self.served <= done + conc:  # wrk leaves up to `conc` unread at the end
                problems.append(f"{self.served} rows for {done} answered (+ up to {conc} in flight)")
            served = f"rows {self.served} = {done} answered + {self.served - done} in flight at the end"
        if self.key is None:
            problems.append("the key's spend was not read")
        else:
            spend, rows, total = self.key
            if rows != self.all_rows:
                problems.append(f"the key has {rows} of its instances' {self.all_rows} rows")
            if not math.isclose(spend, total, rel_tol=1e-9, abs_tol=1e-12):
                problems.append(f"key spend {spend!r} ≠ Σ rows {total!r}")
            served += f"; key ${spend:.6f} = Σ of its {rows} rows"
        if problems:
            return False, "MISMATCH: " + "; ".join(problems)
        return True, "ok: " + served


def _f(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _errors(r: LoadResult) -> str:
    if r.failure:
        return "timeout" if r.failure.startswith("timeout") else "failed"
    return str(r.errors)


def markdown(meta: dict, runs: list[Run], notes: list[str]) -> str:
    out = [
        "## Scale-out: two instances behind nginx",
        "",
        f"Written by `bench/scaleout.py` (`make bench-scale`). Run {meta['date']} on {meta['machine']}; "
        f"{meta['mode']} mode, {meta['duration']} s per measurement.",
        "",
        f"- upstream: {meta['upstream']}; database: {meta['database']}; Redis: {meta['redis']}",
        "- each instance: `parley serve`, one worker, one config (master key, spend logging, "
        "router_settings.redis_url); load: wrk, native `/v1/messages`, one virtual key with a budget",
        f"- CPU of each instance while idle, before the runs: {meta.get('idle') or 'not measured'}",
        "- the balancer: deploy/nginx.conf (round robin, keep-alive to the instances), logging which "
        "instance served each request",
        "- all processes share this machine's cores: CPU per request (user+system of the processes "
        "/ requests served) is the figure that carries to a bigger machine, not req/s",
        "",
        "| setup | conc | req/s | p50 ms | p99 ms | errors | served | gateways CPU ms/req "
        "| balancer | Postgres | Redis | all CPU ms/req | spend check |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        _, text = r.check()
        sides = [_f(r.per_request(r.side_cpu.get(k)), 3) for k in SIDES]
        out.append(
            f"| {r.setup} | {r.concurrency} | {r.result.rps:.0f} | {_f(r.result.p50_ms)} | "
            f"{_f(r.result.p99_ms)} | {_errors(r.result)} | {r.served} | {_f(r.gateway_cpu_ms, 3)} | "
            f"{' | '.join(sides)} | {_f(r.total_cpu_ms, 3)} | {text} |"
        )
    out += [
        "",
        "Per instance. served: its own count, the spend rows it signed; the balancer's count, from its "
        "log: requests answered (+ those wrk left unanswered when it stopped); preempted: involuntary "
        "context switches of its threads (the scheduler gave its core to another process).",
        "",
        "| setup | conc | instance | served | balancer's count | share | CPU ms/req | preempted per req "
        "| peak RSS MB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        for s in r.shares:
            share = f"{s.served / r.served:.0%}" if r.served else "–"
            lb = "–" if s.sent is None else f"{s.answered} (+{(s.sent or 0) - (s.answered or 0)})"
            out.append(
                f"| {r.setup} | {r.concurrency} | {s.instance} | {s.served} | {lb} | {share} | "
                f"{_f(s.cpu_ms, 3)} | {_f(s.preempted / s.served if s.served else None, 2)} | "
                f"{_f(s.peak_rss_mb, 0)} |"
            )
    if notes:
        out += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"
