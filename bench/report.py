"""Turn the bench's measurements into bench/RESULTS.md (markdown tables) and a PNG chart."""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    scenario: str
    target: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    added_p50_ms: float | None = None
    added_p99_ms: float | None = None
    ttft_ms: float | None = None
    cpu_ms_per_req: float | None = None
    redis_cpu_ms_per_req: float | None = None  # the redis-server's, for targets using one
    peak_rss_mb: float | None = None
    errors: int = 0
    requests: int = 0
    failure: str | None = None  # the run gave no numbers: "timeout: ...", "failed: ..."

    @property
    def errors_cell(self) -> str:
        if self.failure:
            return "timeout" if self.failure.startswith("timeout") else "failed"
        return str(self.errors)


@dataclass
class StreamRow:
    target: str
    streams: int
    peak_open: int
    completed: int
    ttft_p50_ms: float
    delay_p50_ms: float
    delay_p99_ms: float
    delay_max_ms: float
    added_p50_ms: float | None
    added_p99_ms: float | None
    peak_rss_mb: float | None
    chunks: int
    errors: int


@dataclass
class FeatureRow:
    """One state (off / on) of a feature, summed over its runs (bench/features.py)."""

    feature: str
    state: str
    concurrency: int
    rps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_ms_per_req: float | None = None
    requests: int = 0
    runs: int = 0
    errors: int = 0
    failure: str | None = None


@dataclass
class Results:
    meta: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    streams: list[StreamRow] = field(default_factory=list)
    features: list[FeatureRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[tuple[str, str, str]] = field(default_factory=list)  # (target, measured, verdict)
    redis_pairs: list[Any] = field(default_factory=list)  # rounds.Pair: native with/without Redis
    forwarder_pairs: list[Any] = field(default_factory=list)  # rounds.Pair: bare, parley
    forwarder_key: str = ""  # parley's key in those pairs, when not the scenario rows' own


def _f(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def markdown(results: Results) -> str:
    m = results.meta
    out = [
        "# parley benchmark results",
        "",
        f"Run {m['date']} on {m['machine']}; {m['mode']} mode, {m['duration']} s per measurement.",
        "",
        f"- upstream: {m['upstream']}; load generator: {m['load']}",
        f"- parley: {m['workers']} worker(s), auth with a {m['auth']}, spend logging {m['spend']}, "
        f"metrics and traces {m.get('observability', 'off')}",
        "- bare forwarder: bench/bare_forwarder.py (aiohttp + uvloop, one process)",
        f"- LiteLLM: {m['litellm']}",
        *([f"- parley@base: the same gateway run from {m['baseline']}"] if m.get("baseline") else []),
        *([f"- /redis: {m['redis']}"] if m.get("redis") else []),
        "",
        "`added` = the target's latency percentile minus the upstream's own at the same concurrency "
        "(`direct`). CPU is user+system time of the target's processes per request; RSS is the "
        "peak resident memory of the target's processes during the measurement.",
        "",
        "| scenario | target | conc | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms "
        "| TTFT ms | CPU ms/req | peak RSS MB | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results.rows:
        out.append(
            f"| {r.scenario} | {r.target} | {r.concurrency} | {r.rps:.0f} | {_f(r.p50_ms)} | "
            f"{_f(r.p99_ms)} | {_f(r.added_p50_ms)} | {_f(r.added_p99_ms)} | {_f(r.ttft_ms)} | "
            f"{_f(r.cpu_ms_per_req, 3)} | {_f(r.peak_rss_mb, 0)} | {r.errors_cell} |"
        )
    if results.streams:
        s0 = results.streams[0]
        out += [
            "",
            f"## {s0.streams} concurrent slow streams",
            "",
            f"Each stream: {m['stream_events']} text deltas {m['stream_interval']} s apart from the "
            f"streaming upstream, the starts spread evenly over {m['stream_ramp']} s (so the upstream's "
            "writes are not all in phase, and connection set-up is not one burst); "
            "delay = arrival at the client minus the time the upstream wrote the delta.",
            "",
            "| target | open at once | completed | TTFT p50 ms | chunk delay p50 ms | p99 ms | max ms "
            "| added p50 ms | added p99 ms | chunks | peak RSS MB | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in results.streams:
            out.append(
                f"| {s.target} | {s.peak_open} | {s.completed}/{s.streams} | {_f(s.ttft_p50_ms)} | "
                f"{_f(s.delay_p50_ms)} | {_f(s.delay_p99_ms)} | {_f(s.delay_max_ms)} | "
                f"{_f(s.added_p50_ms)} | {_f(s.added_p99_ms)} | {s.chunks} | "
                f"{_f(s.peak_rss_mb, 0)} | {s.errors} |"
            )
    out += feature_table(results)
    if results.targets:
        out += ["", "## Targets (issue 22)", "", "| target | measured | verdict |", "|---|---|---|"]
        out += [f"| {t} | {measured} | {verdict} |" for t, measured, verdict in results.targets]
    if results.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in results.notes]
    return "\n".join(out) + "\n"


def feature_table(results: Results) -> list[str]:
    if not results.features:
        return []
    out = [
        "",
        "## Features on and off",
        "",
        "The same parley with a feature off and on, in ABBA order (off, on, on, off; a smoke run: "
        "off, on) at each concurrency, each state's runs summed (bench/features.py). `change` is on "
        "against off.",
        "",
        "| feature | conc | state | runs | req/s | p50 ms | p99 ms | CPU ms/req | change: req/s | "
        "p50 ms | CPU | errors |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    offs = {(o.feature, o.concurrency): o for o in results.features if o.state == "off"}
    for r in results.features:
        off = offs.get((r.feature, r.concurrency))
        change = ["", "", ""]
        if r.state == "on" and off is not None and not (r.failure or off.failure) and off.rps:
            change = [f"{r.rps / off.rps - 1:+.1%}", f"{(r.p50_ms or 0) - (off.p50_ms or 0):+.2f}", ""]
            if r.cpu_ms_per_req and off.cpu_ms_per_req:
                change[2] = f"{r.cpu_ms_per_req / off.cpu_ms_per_req - 1:+.1%}"
        errors = ("timeout" if r.failure.startswith("timeout") else "failed") if r.failure else str(r.errors)
        out.append(
            f"| {r.feature} | {r.concurrency} | {r.state} | {r.runs} | {r.rps:.0f} | {_f(r.p50_ms)} | "
            f"{_f(r.p99_ms)} | {_f(r.cpu_ms_per_req, 3)} | {' | '.join(change)} | {errors} |"
        )
    return out


def chart(results: Results, path: str) -> str | None:
    """A PNG: requests/s per scenario and target at the highest concurrency, and added p50 at c=1."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no chart: matplotlib is not installed (`make bench` installs the `bench` extra)"
    rows = [r for r in results.rows if r.target != "direct"]
    if not rows:
        return "no chart: nothing measured"
    top = max(r.concurrency for r in results.rows)
    scenarios = list(dict.fromkeys(r.scenario for r in results.rows))
    targets = list(dict.fromkeys(r.target for r in results.rows))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    colors = {
        "direct": "#9e9e9e",
        "bare": "#1f77b4",
        "parley": "#2ca02c",
        "parley@base": "#98df8a",
        "parley/granian": "#ff7f0e",
        "litellm": "#d62728",
    }
    width = 0.8 / len(targets)
    for i, target in enumerate(targets):
        rps = [
            next(
                (
                    r.rps
                    for r in results.rows
                    if r.scenario == s and r.target == target and r.concurrency == top
                ),
                0,
            )
            for s in scenarios
        ]
        axes[0].bar(
            [x + i * width for x in range(len(scenarios))], rps, width, label=target, color=colors.get(target)
        )
    axes[0].set_yscale("log")
    axes[0].set_title(f"requests/s at concurrency {top} (log scale)")
    low = min(r.concurrency for r in results.rows)
    others = [t for t in targets if t != "direct"]
    width2 = 0.8 / max(1, len(others))
    for i, target in enumerate(others):
        added = [
            next(
                (
                    max(r.added_p50_ms or 0, 0.01)
                    for r in results.rows
                    if r.scenario == s and r.target == target and r.concurrency == low
                ),
                0,
            )
            for s in scenarios
        ]
        axes[1].bar(
            [x + i * width2 for x in range(len(scenarios))],
            added,
            width2,
            label=target,
            color=colors.get(target),
        )
    axes[1].set_yscale("log")
    axes[1].set_title(f"added p50 latency (ms) at concurrency {low} (log scale)")
    for ax, w in zip(axes, (width, width2), strict=True):
        ax.set_xticks([x + 0.4 - w / 2 for x in range(len(scenarios))])
        ax.set_xticklabels(scenarios, rotation=20, ha="right", fontsize=8)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


SECTION = ("<!-- scale-out: bench/scaleout.py writes this section -->", "<!-- /scale-out -->")


def kept_section(path: str) -> str:
    """The scale-out section of an existing RESULTS.md (markers included), or ""."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return ""
    start, end = text.find(SECTION[0]), text.find(SECTION[1])
    return text[start : end + len(SECTION[1])] if 0 <= start < end else ""


def put_section(out_dir: str, body: str) -> str:
    """Write `body` as RESULTS.md's scale-out section, in place of the old one; returns the path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "RESULTS.md")
    old = ""
    with contextlib.suppress(OSError), open(path) as f:
        old = f.read()
    section = f"{SECTION[0]}\n{body}{SECTION[1]}"
    kept = kept_section(path)
    text = old.replace(kept, section) if kept else (old.rstrip("\n") + "\n\n" if old else "") + section + "\n"
    with open(path, "w") as f:
        f.write(text)
    return path


def write(results: Results, out_dir: str) -> str:
    """RESULTS.md and results.png; a scale-out section already in RESULTS.md is kept at the end."""
    os.makedirs(out_dir, exist_ok=True)
    png = os.path.join(out_dir, "results.png")
    try:
        problem = chart(results, png)
    except Exception as e:  # the table is what matters; never lose it to the chart
        problem = f"no chart: {type(e).__name__}: {e}"
    if problem:
        results.notes.append(problem)
    text = markdown(results)
    if not problem:
        text += "\n![requests/s and added latency](results.png)\n"
    path = os.path.join(out_dir, "RESULTS.md")
    kept = kept_section(path)
    with open(path, "w") as f:
        f.write(text + ("\n" + kept + "\n" if kept else ""))
    return text
