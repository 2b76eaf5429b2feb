"""Process-level tuning for a server, applied once the gateway has started.

`gc.freeze()` moves every object alive after start-up (modules, config, SQLAlchemy's tables and
compiled caches, the deployments) to a permanent generation the collector never scans again, and
the thresholds make young collections rarer: a request allocates a few hundred short-lived
containers, and with CPython's default (700, 10, 10) the collector ran about every other request
and a full collection walked the whole start-up heap every ~70k allocations.
`PARLEY_GC=default` keeps CPython's settings (for comparison runs). Modules imported later (numpy
when something is first embedded, redis-py when a Redis link first connects, Alembic when a
database needs migrating) are not frozen: the collector scans them like any other old object.

`HeapTrimmer` hands the C heap's free pages back to the OS every few seconds (glibc's
`malloc_trim`, from a thread of its own: the call releases the GIL). Without it, a burst of large
bodies (64 concurrent 100 KB requests) left ~40 MB of freed memory in the heap for the life of the
worker: glibc gives memory back only from the top of the heap, and a few live objects above the
freed ones keep it. `PARLEY_MALLOC_TRIM=<seconds>` sets the interval, `0` turns it off.
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading
from collections.abc import Callable

GC_ENV = "PARLEY_GC"
SERVER_THRESHOLDS = (50_000, 50, 100)
TRIM_ENV = "PARLEY_MALLOC_TRIM"
TRIM_INTERVAL = 5.0  # seconds; one trim with nothing to release costs well under 1 ms


def tune_gc(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """Freeze the start-up heap and raise the thresholds; returns what was done (for the log)."""
    if environ.get(GC_ENV, "").lower() == "default":
        return "gc: CPython defaults (PARLEY_GC=default)"
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVER_THRESHOLDS)
    return f"gc: {gc.get_freeze_count()} start-up objects frozen, thresholds {SERVER_THRESHOLDS}"


PR_SET_NAME = 15  # prctl(2): the calling thread's name, up to 15 bytes


def name_os_thread() -> None:
    """Give the calling thread its Python name in the OS too (Linux: the first 15 bytes), so
    `top -H`, `ps -L`, perf and /proc/<pid>/task/*/comm tell parley's threads apart (they all
    read `python` otherwise). Call it first thing in a thread's run; a no-op without prctl."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    name = threading.current_thread().name.encode("utf-8", "replace")[:15]
    prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none (musl, macOS)."""
    try:
        fn = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


class HeapTrimmer:
    """A daemon thread calling `malloc_trim(0)` every `interval` seconds until stopped."""

    def __init__(self, interval: float, trim: Callable[[int], int] | None) -> None:
        self.interval = interval
        self.trim = trim
        self.trims = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | os._Environ[str] = os.environ) -> HeapTrimmer:
        try:
            interval = float(environ.get(TRIM_ENV) or TRIM_INTERVAL)
        except ValueError:
            interval = TRIM_INTERVAL
        return cls(interval, malloc_trim() if interval > 0 else None)

    def start(self) -> str:
        """Start the thread; returns what was done (for the log)."""
        if self.trim is None:
            return "malloc_trim: off" if self.interval <= 0 else "malloc_trim: not in this C library"
        self._thread = threading.Thread(target=self._run, name="parley-heap-trim", daemon=True)
        self._thread.start()
        return f"malloc_trim: every {self.interval:g} s"

    def _run(self) -> None:
        name_os_thread()
        assert self.trim is not None
        while not self._stop.wait(self.interval):
            self.trim(0)
            self.trims += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
