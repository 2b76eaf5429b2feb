"""What the observers' own code costs, in process: the hooks on the loop and the OTLP encoder.

    PYTHONPATH=<build>/src python bench/observe_hooks.py [--repeat 20000]

One real request goes through a gateway with `callbacks: [prometheus, otel]` (multi-process
metrics, as `parley serve` runs them); its context is then replayed through each observer's
hooks (`observe_request`, or `on_request` in older builds, `attempt_started`, `attempt_ended`,
`on_done`) `--repeat` times, and the spans recorded on the way are encoded as the exporter thread
would. CPU time, not wall clock; compare two builds by alternating PYTHONPATH in one session
(docs/performance.md, "Features on and off").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="parley-hooks-"))
os.environ.setdefault("OTEL_BSP_MAX_QUEUE_SIZE", "100000000")  # keep every span to encode it
os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", "600000")

import httpx2 as httpx  # noqa: E402

from calls import HEADERS, served  # noqa: E402
from parley.config import build_config  # noqa: E402
from parley.core.context import FilterState  # noqa: E402
from parley.filters.otlp import Encoder  # noqa: E402
from parley.router.events import AttemptEnd  # noqa: E402
from parley.server.app import create_app  # noqa: E402
from parley.testing.procs import FakeUpstream  # noqa: E402


def encoders() -> list[tuple[str, Encoder]]:
    """The Python encoder, and the compiled writer's when this build has one."""
    out = [("OTLP encoder, Python", Encoder())]
    try:
        from parley.filters.trace_record import span_writer
    except ImportError:  # builds before the compiled writer
        return out
    writer = span_writer()
    if writer is not None:
        out.append(("OTLP encoder, C", Encoder(writer)))
    return out


def replay(observer, ctx, target, body, repeat: int) -> float:
    """Microseconds of CPU per request for the observer's four hooks."""
    end = AttemptEnd(200, True)
    started = time.process_time()
    for _ in range(repeat):
        ctx.state, ctx.finished = FilterState(), False
        if hasattr(observer, "observe_request"):  # the synchronous hook (builds that have it)
            observer.observe_request(ctx, body)
        else:
            coroutine = observer.on_request(ctx, body)
            with contextlib.suppress(StopIteration):
                coroutine.send(None)
        observer.attempt_started(ctx, target)
        observer.attempt_ended(ctx, target, end)
        observer.on_done(ctx)
    return (time.process_time() - started) / repeat * 1e6


async def measure(repeat: int) -> list[str]:
    upstream = FakeUpstream()
    try:
        params = {"model": "anthropic/m", "api_base": upstream.url, "api_key": "x"}
        raw = {
            "model_list": [{"model_name": "m", "params": params}],
            "litellm_settings": {"callbacks": ["prometheus", "otel"]},
        }
        app = create_app(build_config(raw, "bench"))
        observers = {type(f).__name__: f for f in app.state.gateway.pipeline.chain.filters}
        tracing, metrics = observers["Tracing"], observers["PrometheusMetrics"]
        seen = {}
        original = tracing.attempt_started
        tracing.attempt_started = lambda ctx, target: (
            seen.update(ctx=ctx, target=target),
            original(ctx, target),
        )
        body = {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "hi there"}]}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=served(app)), base_url="http://p"
        ) as c:
            (await c.post("/v1/messages", json=body, headers=HEADERS)).raise_for_status()
        tracing.attempt_started = original
        lines = []
        for name, observer in (("trace recording", tracing), ("Prometheus metrics", metrics)):
            best = min(replay(observer, seen["ctx"], seen["target"], body, repeat) for _ in range(3))
            lines.append(f"{name:20} {best:6.1f} us/request (loop side, best of 3)")
        queued = list(tracing.exporter.queue)[:2000]  # (a request's trace, its span count)
        items, spans = [item for item, _ in queued], sum(n for _, n in queued)
        for name, encoder in encoders():
            encoder.request(tracing.exporter.resource, "parley", items[:10])  # its caches, as in a server
            started = time.process_time()
            encoder.request(tracing.exporter.resource, "parley", items)
            per_span = (time.process_time() - started) / spans * 1e6
            lines.append(f"{name:20} {per_span:6.1f} us/span ({spans} spans, exporter thread)")
        return lines
    finally:
        upstream.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=20000)
    args = p.parse_args()
    try:
        print("\n".join(asyncio.run(measure(args.repeat))))
    except Exception as e:  # the benchmark never crashes: say what failed
        print(f"observe_hooks.py: could not measure: {type(e).__name__}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
