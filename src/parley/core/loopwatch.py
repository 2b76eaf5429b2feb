"""Diagnostics for the benchmark: how long the event loop is blocked, by what, and GC pauses.

Off unless `PARLEY_LOOP_WATCH=<file>` is set (the bench's profiler sets it); then a thread asks
the loop every `interval` seconds to run a no-op callback and records how late it ran (the loop
lag: what a request that became ready at that moment waited). While a probe is late by more than
`stall` seconds, the thread samples the loop thread's stack, so the report names what held the
loop. `gc.callbacks` time every collection per generation. The summary (histograms in ms, the
stalls' most common frames) is rewritten to the file every second as JSON.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import os
import sys
import threading
import time
import traceback
from typing import Any

import orjson

from parley.core.runtime import name_os_thread

ENV = "PARLEY_LOOP_WATCH"
BUCKETS_MS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, float("inf"))


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS_MS)
        self.total_ms = 0.0
        self.max_ms = 0.0
        self.n = 0

    def add(self, ms: float) -> None:
        self.n += 1
        self.total_ms += ms
        self.max_ms = max(self.max_ms, ms)
        for i, edge in enumerate(BUCKETS_MS):
            if ms <= edge:
                self.counts[i] += 1
                return

    def summary(self) -> dict[str, Any]:
        buckets = {f"<={edge:g}": c for edge, c in zip(BUCKETS_MS, self.counts, strict=True) if c}
        return {"n": self.n, "total_ms": round(self.total_ms, 3), "max_ms": round(self.max_ms, 3), **buckets}


class LoopWatch:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, path: str, interval: float = 0.002, stall: float = 0.001
    ) -> None:
        self.loop = loop
        self.path = path
        self.interval = interval
        self.stall = stall
        self.lag = Histogram()
        self.gc = {gen: Histogram() for gen in range(3)}
        self.stalls: collections.Counter[str] = collections.Counter()  # frame -> samples
        self._gc_started = 0.0
        self._loop_thread = threading.get_ident()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="parley-loop-watch", daemon=True)

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        self._thread.join(timeout=2)
        self.write()

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started:
            self.gc[info["generation"]].add((time.perf_counter() - self._gc_started) * 1000)

    def _run(self) -> None:
        name_os_thread()
        last_write = time.monotonic()
        while not self._stop.wait(self.interval):
            ran = threading.Event()
            t0 = time.perf_counter()
            try:
                self.loop.call_soon_threadsafe(ran.set)
            except RuntimeError:  # the loop closed
                return
            while not ran.wait(self.stall):
                self._sample_stack()
                if self._stop.is_set():
                    return
            self.lag.add((time.perf_counter() - t0) * 1000)
            if time.monotonic() - last_write >= 1.0:
                self.write()
                last_write = time.monotonic()

    def _sample_stack(self) -> None:
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return
        stack = traceback.StackSummary.extract(traceback.walk_stack(frame), lookup_lines=False)
        stack.reverse()
        parley = [f for f in stack if "/parley/" in f.filename and "loopwatch" not in f.filename]
        leaf = stack[-1]
        where = f"{os.path.basename(leaf.filename)}:{leaf.name}"
        if parley and parley[-1] is not leaf:
            caller = parley[-1]
            where += f" (from {os.path.basename(caller.filename)}:{caller.name})"
        self.stalls[where] += 1

    def report(self) -> dict[str, Any]:
        return {
            "probe_interval_ms": self.interval * 1000,
            "loop_lag_ms": self.lag.summary(),
            "gc_pause_ms": {str(gen): h.summary() for gen, h in self.gc.items()},
            "gc_threshold": gc.get_threshold(),
            "gc_frozen": gc.get_freeze_count(),
            "stall_samples": dict(self.stalls.most_common(30)),
            "thread_cpu_s": thread_cpu(),
        }

    def write(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(orjson.dumps(self.report(), option=orjson.OPT_INDENT_2))
        os.replace(tmp, self.path)


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) each live thread of this process has used, by thread name."""
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            clock = time.pthread_getcpuclockid(thread.ident)
            out[thread.name] = round(out.get(thread.name, 0.0) + time.clock_gettime(clock), 3)
        except (OSError, AttributeError):
            continue
    return out


def watch_from_env(environ: dict[str, str] | os._Environ[str] = os.environ) -> LoopWatch | None:
    """A started LoopWatch on the running loop when `PARLEY_LOOP_WATCH` names a file, else None."""
    path = environ.get(ENV)
    if not path:
        return None
    watch = LoopWatch(asyncio.get_running_loop(), f"{path}.{os.getpid()}.json")
    watch.start()
    return watch
