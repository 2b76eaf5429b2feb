"""The scale-out bench (bench/scaleout.py): two instances behind nginx sharing Postgres and Redis.

The smoke run proves the harness end to end and that its spend check holds on a real run (every
answered request has its spend row in Postgres, the key's spend is the sum of its rows); the unit
tests show the check is not vacuous. No timing assertions.
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from bench_support import run_smoke

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
sys.path.insert(0, BENCH)

import load  # noqa: E402
import report  # noqa: E402
from scale_report import Run, Share  # noqa: E402


def run_scaleout(out_dir, *extra: str) -> str:
    return run_smoke("scaleout.py", out_dir, *extra)


def rows(text: str, columns: int) -> list[list[str]]:
    out = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == columns and not cells[1].startswith("-"):
            out.append(cells)
    return out


@pytest.mark.slow
@pytest.mark.skipif(NGINX is None or not shutil.which("redis-server"), reason="needs nginx and redis-server")
def test_smoke_two_instances_share_the_load_and_every_request_has_its_spend_row(tmp_path):
    text = run_scaleout(tmp_path)
    assert report.SECTION[0] in text and report.SECTION[1] in text
    combined = {r[0]: r for r in rows(text, 13) if r[0] != "setup"}
    assert set(combined) == {"2 instances via nginx", "1 instance direct"}, text
    for cells in combined.values():
        assert float(cells[2]) > 0 and cells[5] == "0", cells  # req/s, errors
        assert cells[12].startswith("ok: rows "), cells  # the spend check
        assert float(cells[7]) > 0  # CPU per request of the gateways was measured
    per_instance = [r for r in rows(text, 9) if r[0] == "2 instances via nginx"]
    assert [r[2] for r in per_instance] == ["A", "B"]
    for cells in per_instance:
        assert int(cells[3]) > 0, cells  # both instances served (by their own spend rows)
    assert sum(int(r[3]) for r in per_instance) == int(combined["2 instances via nginx"][6])
    assert "parley_bench_" in text and "dropped at the end" in text


def test_an_unreachable_postgres_is_a_note_and_the_section_is_still_written(tmp_path):
    (tmp_path / "RESULTS.md").write_text("# parley benchmark results\n\nthe main table\n")
    text = run_scaleout(tmp_path, "--setups", "one", "--pg", "postgresql://127.0.0.1:1")
    assert text.startswith("# parley benchmark results\n\nthe main table\n")  # the rest is kept
    assert "Postgres failed:" in text
    assert rows(text, 13) == [["setup", "conc", "req/s", "p50 ms", "p99 ms", "errors", "served",
                              "gateways CPU ms/req", "balancer", "Postgres", "Redis", "all CPU ms/req",
                              "spend check"]]  # fmt: skip


def _run(served: list[int], answered: list[int], sent: list[int], key: tuple[float, int, float]) -> Run:
    run = Run("2 instances via nginx", 16, load.LoadResult(sum(answered), 1.0, 1.0, 2.0, 0, "wrk"))
    for name, n, a, s in zip("AB", served, answered, sent, strict=True):
        run.shares.append(Share(name, n, s, a, 0.5, 0.5 * n / 1000, 100.0))
    run.key, run.all_rows = key, sum(served)
    return run


def test_the_spend_check_catches_lost_rows_and_a_wrong_key_total():
    ok, text = _run([100, 98], [99, 97], [100, 99], (0.0198, 198, 0.0198)).check()
    assert ok, text
    lost, text = _run([100, 96], [99, 97], [100, 99], (0.0196, 196, 0.0196)).check()
    assert lost is False and "B: 96 rows for 97-99 requests" in text
    wrong, text = _run([100, 98], [99, 97], [100, 99], (0.0200, 198, 0.0198)).check()
    assert wrong is False and "key spend" in text
    foreign, text = _run([100, 98], [99, 97], [100, 99], (0.0198, 197, 0.0198)).check()
    assert foreign is False and "the key has 197" in text


def test_the_main_bench_keeps_the_scale_out_section(tmp_path):
    report.put_section(str(tmp_path), "## Scale-out\n\nold numbers\n")
    report.put_section(str(tmp_path), "## Scale-out\n\nnew numbers\n")
    report.write(report.Results({**META}, notes=[]), str(tmp_path))
    text = (tmp_path / "RESULTS.md").read_text()
    assert text.startswith("# parley benchmark results")
    assert text.count(report.SECTION[0]) == 1 and "new numbers" in text and "old numbers" not in text


META = {
    "date": "today",
    "machine": "this one",
    "mode": "smoke",
    "duration": 1,
    "upstream": "nginx",
    "load": "wrk",
    "workers": 1,
    "auth": "virtual key",
    "spend": "on",
    "litellm": "not measured",
}
