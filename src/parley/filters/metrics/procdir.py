"""The multi-process directory: where each worker of one `parley serve` writes its metric values.

It is private to the instance (named after its port, so two gateways on one host never share or
wipe each other's), emptied when the instance starts (a restarted instance starts its counters
from zero, which Prometheus reads as a counter reset) and kept while it runs: a worker that dies
and is replaced leaves its counts behind (counters stay monotonic) while its live gauges
(in-flight requests, spend queue) are dropped by the next worker to start.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile

ENV = "PROMETHEUS_MULTIPROC_DIR"
BASE_ENV = "PARLEY_METRICS_DIR"  # where instance directories go (default: the system temp dir)


def prepare(host: str, port: int, env: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """Create (emptied) the instance's directory and point prometheus_client at it via the env of
    this process, which the workers inherit. Call before anything imports prometheus_client's values."""
    base = env.get(BASE_ENV) or tempfile.gettempdir()
    safe_host = re.sub(r"[^A-Za-z0-9.]", "_", host)
    path = os.path.join(base, f"parley-metrics-{safe_host}-{port}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, mode=0o700, exist_ok=True)
    env[ENV] = path
    return path


def active() -> str | None:
    """The directory values are written to, if prometheus_client writes to files in this process
    (it decides when first imported, from the environment)."""
    from prometheus_client import values

    path = os.environ.get(ENV)
    return path if path and values.ValueClass is not values.MutexValue else None


def forget_dead_workers(path: str) -> None:
    """Drop the live gauges of workers that are gone (their counters stay)."""
    from prometheus_client import multiprocess

    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        pid = int(name.rsplit("_", 1)[1].removesuffix(".db"))
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, path)


def leaving(path: str) -> None:
    """This worker stops: its live gauges go."""
    from prometheus_client import multiprocess

    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(os.getpid(), path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
