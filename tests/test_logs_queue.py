"""The log queue of `parley serve` (parley.logs): records reach the writer thread as logged."""

from __future__ import annotations

import subprocess
import sys

import orjson

SCRIPT = """
import logging
from parley.logs import setup_logging
setup_logging("info", json=True, secrets=["sk-secret-0123456789"])
log = logging.getLogger("parley.test")
args = [1]
log.info("served %s", args)
args.append(2)  # after the call: the line keeps what was logged
try:
    1 / 0
except ZeroDivisionError:
    log.exception("failed for sk-secret-0123456789")
"""


def test_lines_keep_their_arguments_and_exceptions_and_mask_secrets():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    served, failed = (orjson.loads(line) for line in done.stderr.splitlines())
    assert (served["logger"], served["level"], served["message"]) == ("parley.test", "INFO", "served [1]")
    assert failed["message"] == "failed for ***"
    assert "ZeroDivisionError" in failed["exception"] and "Traceback" in failed["exception"]
