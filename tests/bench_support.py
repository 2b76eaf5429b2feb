"""Run one of bench/'s scripts in smoke mode as a child process and read the table it wrote."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")


def run_smoke(script: str, out_dir, *extra: str) -> str:
    """`bench/<script> --smoke --out out_dir *extra` with this checkout's src first; RESULTS.md's text."""
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCH, script), "--smoke", "--out", str(out_dir), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(os.path.join(out_dir, "RESULTS.md")) as f:
        return f.read()
