"""The loop watch (core/loopwatch.py) names what blocks the event loop and times GC pauses; the
server GC settings (core/runtime.py) freeze the start-up heap; the heap trimmer gives freed C-heap
pages back to the OS."""

from __future__ import annotations

import asyncio
import gc
import json
import platform
import time

from parley.core.loopwatch import LoopWatch
from parley.core.runtime import SERVER_THRESHOLDS, HeapTrimmer, malloc_trim, tune_gc


def block_the_loop() -> None:
    time.sleep(0.08)  # a blocking call on the event loop, as a bug would make


async def test_a_blocking_call_shows_as_lag_and_is_named(tmp_path):
    path = str(tmp_path / "watch.json")
    watch = LoopWatch(asyncio.get_running_loop(), path)
    watch.start()
    try:
        await asyncio.sleep(0.05)
        block_the_loop()
        gc.collect()
        await asyncio.sleep(0.05)
    finally:
        watch.stop()
    with open(path) as f:
        report = json.load(f)
    assert report["loop_lag_ms"]["max_ms"] >= 60
    assert any("block_the_loop" in where for where in report["stall_samples"]), report["stall_samples"]
    assert report["gc_pause_ms"]["2"]["n"] >= 1
    assert report["thread_cpu_s"]["MainThread"] > 0


def test_server_gc_freezes_the_heap_and_raises_the_thresholds():
    before = gc.get_threshold()
    try:
        assert tune_gc({"PARLEY_GC": "default"}).startswith("gc: CPython defaults")
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0
        tune_gc({})
        assert gc.get_threshold() == SERVER_THRESHOLDS
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_heap_trimmer_trims_on_its_interval_until_stopped():
    calls: list[int] = []
    trimmer = HeapTrimmer(0.02, lambda pad: calls.append(pad) or 1)
    assert trimmer.start() == "malloc_trim: every 0.02 s"
    time.sleep(0.2)
    trimmer.stop()
    seen = len(calls)
    assert seen >= 3 and set(calls) == {0}
    time.sleep(0.1)
    assert len(calls) == seen  # stopped means stopped


def test_the_heap_trimmer_is_off_with_zero_and_real_on_glibc():
    assert HeapTrimmer.from_env({"PARLEY_MALLOC_TRIM": "0"}).start() == "malloc_trim: off"
    assert HeapTrimmer.from_env({"PARLEY_MALLOC_TRIM": "soon"}).interval == 5.0  # a typo: the default
    trim = malloc_trim()
    if platform.libc_ver()[0] == "glibc":
        assert trim is not None and trim(0) in (0, 1)  # 1: memory was released
