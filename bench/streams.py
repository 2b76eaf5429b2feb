"""Many concurrent slow streams from an asyncio client: time to first token and per-chunk delay.

The streaming upstream writes `@<unix time>` into each text delta; the client notes when each delta
arrives, so delay = arrival - written, measured end to end through whatever sits in between.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

import aiohttp

STAMP = re.compile(rb'"text":"@(\d+\.\d+)"')


@dataclass
class StreamStats:
    streams: int
    completed: int
    ttft_ms: list[float] = field(default_factory=list)
    chunk_delay_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    open_now: int = 0
    peak_open: int = 0  # streams open at the same moment

    def pct(self, values: list[float], p: float) -> float:
        if not values:
            return float("nan")
        s = sorted(values)
        return s[min(len(s) - 1, int(len(s) * p / 100))]


async def _one(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    stats: StreamStats,
    start_gate: asyncio.Event,
    offset: float,
) -> None:
    await start_gate.wait()
    if offset:
        await asyncio.sleep(offset)
    t0 = time.perf_counter()
    first = True
    buf = b""
    stats.open_now += 1
    stats.peak_open = max(stats.peak_open, stats.open_now)
    try:
        async with session.post(url, data=body, headers=headers) as r:
            if r.status != 200:
                stats.errors.append(f"status {r.status}: {(await r.read())[:200]!r}")
                return
            async for chunk in r.content.iter_any():
                now = time.time()
                buf += chunk
                *events, buf = buf.split(b"\n\n")
                for event in events:
                    m = STAMP.search(event)
                    if m is None:
                        continue
                    if first:
                        stats.ttft_ms.append((time.perf_counter() - t0) * 1000)
                        first = False
                    stats.chunk_delay_ms.append((now - float(m.group(1))) * 1000)
        stats.completed += 1
    except (TimeoutError, aiohttp.ClientError) as e:
        stats.errors.append(f"{type(e).__name__}: {e}")
    finally:
        stats.open_now -= 1


async def _run(
    url: str, body: bytes, headers: dict[str, str], count: int, timeout: float, ramp: float
) -> StreamStats:
    stats = StreamStats(count, 0)
    gate = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
    ) as session:
        tasks = [
            asyncio.create_task(_one(session, url, body, headers, stats, gate, i * ramp / count))
            for i in range(count)
        ]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*tasks)
    return stats


def run_streams(
    url: str, body: bytes, headers: dict[str, str], count: int, timeout: float = 120.0, ramp: float = 0.0
) -> StreamStats:
    """Open `count` streams, their starts spread evenly over `ramp` seconds (0: all at once).

    With a ramp shorter than a stream's life every stream is still open at the same moment, while
    the upstream's writes are not all in phase (real streams are not) and the start-up is no burst.
    """
    try:
        import uvloop

        return uvloop.run(_run(url, body, headers, count, timeout, ramp))
    except ImportError:
        return asyncio.run(_run(url, body, headers, count, timeout, ramp))
