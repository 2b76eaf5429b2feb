"""CI smoke of the benchmark suite (bench/run.py --smoke): it runs and writes its table.

No timing assertions: only that every part of the harness works end to end (upstreams, the bare
forwarder, parley under wrk or the Python loop, slow streams, the report).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from bench_support import run_smoke

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_bench(out_dir, *extra: str) -> str:
    return run_smoke("run.py", out_dir, *extra)


def table_rows(text: str, scenario: str, target: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 12 and cells[0] == scenario and cells[1] == target:
            rows.append(cells)
    return rows


def served_without_errors(text: str, scenario: str, target: str) -> None:
    rows = table_rows(text, scenario, target)
    assert rows, f"no {scenario}/{target} row in:\n{text}"
    for cells in rows:
        assert float(cells[3]) > 0, cells  # some requests were served
        assert cells[11] == "0", cells  # and none failed


@pytest.mark.slow
def test_smoke_writes_the_table(tmp_path):
    text = run_bench(tmp_path)
    assert "| scenario | target | conc | req/s |" in text
    for scenario in ("native", "native-stream", "claude-code-100KB"):
        served_without_errors(text, scenario, "parley")
        served_without_errors(text, scenario, "bare")
    assert "concurrent slow streams" in text
    stream_line = next(line for line in text.splitlines() if line.startswith("| parley | "))
    assert "20/20" in stream_line
    assert "## Targets (issue 22)" in text
    features_were_compared(text)


def features_were_compared(text: str) -> None:
    """Metrics + tracing and the PII guardrail, each off and on, served without errors; the
    observed gateway really exported spans and answered /metrics; both targets were judged."""
    for feature in ("metrics + tracing (native)", "PII guardrail (10 KB prompt)"):
        for state in ("off", "on"):
            rows = [
                cells
                for line in text.splitlines()
                if len(cells := [c.strip() for c in line.strip("|").split("|")]) == 12
                and cells[0] == feature
                and cells[2] == state
            ]
            assert rows, f"no {feature}/{state} row in:\n{text}"
            assert float(rows[0][4]) > 0 and rows[0][11] == "0", rows
    spans = re.search(r"served (\d+) native requests; the OTLP receiver counted (\d+) spans", text)
    assert spans and int(spans.group(1)) > 0 and int(spans.group(2)) > 0, text
    assert "parley_requests_total series" in text and "had 0 parley_requests_total" not in text
    assert "metrics + tracing on: within 10% of off" in text
    assert "guardrails (PII on a 10 KB prompt): ≤ 1 ms p50 added" in text


@pytest.mark.slow
def test_smoke_with_fallback_upstream_and_python_load(tmp_path):
    """What CI gets when nginx and wrk cannot be installed: the fake upstream and a Python loop."""
    text = run_bench(tmp_path, "--no-nginx", "--no-wrk", "--only", "native,streams")
    assert "upstream: parley fake-upstream" in text
    assert "Python asyncio loop" in text
    assert "NOTE: nginx not used" in text and "NOTE: wrk not used" in text
    served_without_errors(text, "native", "parley")
    assert table_rows(text, "native-stream", "parley") == []  # --only was honoured


def test_retrieval_bench_runs_and_reports_every_row():
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "retrieval.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert "failed" not in proc.stdout, proc.stdout
    assert any(r.startswith("| recall@5, hybrid") for r in rows)
    assert any(r.startswith("| search at 1,000 chunks") for r in rows)
    assert len(rows) == 9  # header, load, 2 throughput, 3 recall, search, cache lookup


def test_a_hanging_load_run_is_a_timeout_row_and_the_table_is_still_written(tmp_path):
    """A wrk that never ends (a target that hangs) is killed at its budget and recorded as
    `timeout` in its row; the suite goes on and writes its table (it once died with a traceback)."""
    hanging = tmp_path / "wrk"
    hanging.write_text("#!/bin/sh\nexec sleep 600\n")
    hanging.chmod(0o755)
    out = tmp_path / "out"
    text = run_bench(out, "--only", "native", "--wrk", str(hanging), "--load-timeout", "2")
    rows = table_rows(text, "native", "parley") + table_rows(text, "native", "bare")
    assert len(rows) == 2, text
    for cells in rows:
        assert cells[11] == "timeout", cells
        assert cells[3] == "0", cells
    assert "timeout: wrk still running after 2 s (killed)" in text


@pytest.mark.slow
def test_redis_and_forwarder_targets_are_judged_on_pairs_measured_side_by_side(tmp_path):
    """--redis: the scenario rows' pair plus `--redis-rounds` more, each pair's ratio listed, the
    target judged on their median; the forwarder's targets the same way (`--forwarder-rounds`), on
    a key with a budget only."""
    text = run_bench(
        tmp_path,
        "--redis",
        "--only",
        "native",
        "--redis-rounds",
        "2",
        "--forwarder-rounds",
        "2",
        "--streams",
        "0",
    )
    served_without_errors(text, "native", "parley/redis")
    line = next(line for line in text.splitlines() if "without Redis (pairs side by side)" in line)
    assert "median" in line and "of 3 pairs" in line, line
    ratios = re.findall(r"(\d+)/(\d+) = (\d+)%", line)
    assert len(ratios) == 3, line
    for redis_rps, plain_rps, percent in ratios:
        assert int(redis_rps) > 0 and int(plain_rps) > 0
        assert abs(int(redis_rps) / int(plain_rps) * 100 - int(percent)) <= 1, line
    assert "ms CPU/req (gateway + redis-server)" in line, line  # what Redis costs, both sides
    # the forwarder's targets too: the scenario rows' pair and 2 more, each listed, on their median
    rps = next(line for line in text.splitlines() if "forwarder's req/s (pairs side by side)" in line)
    cpu = next(
        line for line in text.splitlines() if "forwarder's (pairs side by side)" in line and "CPU" in line
    )
    assert "of 3 pairs" in rps and len(re.findall(r"(\d+)/(\d+) = (\d+)%", rps)) == 3, rps
    # with --redis the keys have limits too: the forwarder's targets on a key with a budget only
    # (issue 22's setup), measured in the rounds
    assert "key with a budget:" in rps, rps
    assert "of 3 pairs" in cpu and len(re.findall(r"\d+\.\d{3}/\d+\.\d{3} ms", cpu)) == 3, cpu


@pytest.mark.slow
def test_threads_bench_reports_the_named_threads_of_a_loaded_gateway():
    """bench/threads.py under a short wrk run: the event loop and the spend writer and journal,
    by the names parley gives its threads in the OS, with some CPU per request each."""
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "threads.py"), "--duration", "1", "--no-bare"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {}
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 8 and cells[0] == "parley":
            rows[cells[1]] = cells
    assert {"main (event loop)", "parley-spend-wr", "parley-spend-jo"} <= set(rows), proc.stdout
    assert float(rows["main (event loop)"][5]) > 0 and float(rows["parley-spend-wr"][5]) > 0, proc.stdout
