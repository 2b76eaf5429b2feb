"""Process-level tuning for a server, applied once the gateway has started.

`gc.freeze()` moves every object alive after start-up (modules, config, SQLAlchemy's tables and
compiled caches, the deployments) to a permanent generation the collector never scans again, and
the thresholds make young collections rarer: a request allocates a few hundred short-lived
containers, and with CPython's default (700, 10, 10) the collector ran about every other request
and a full collection walked the whole start-up heap every ~70k allocations.
`PARLEY_GC=default` keeps CPython's settings (for comparison runs).
"""

from __future__ import annotations

import gc
import os

GC_ENV = "PARLEY_GC"
SERVER_THRESHOLDS = (50_000, 50, 100)


def tune_gc(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """Freeze the start-up heap and raise the thresholds; returns what was done (for the log)."""
    if environ.get(GC_ENV, "").lower() == "default":
        return "gc: CPython defaults (PARLEY_GC=default)"
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVER_THRESHOLDS)
    return f"gc: {gc.get_freeze_count()} start-up objects frozen, thresholds {SERVER_THRESHOLDS}"
