"""What the PII guardrail costs per request: CPU, latency at concurrency 1, time to first token.

    python bench/guardrails.py [--requests 300]

A ~10 KB prompt shaped like a support ticket (prose, a log excerpt, a stack trace, a config
snippet) with 12 planted entities (emails, phones, a card, an IBAN, IPs, an AWS key, a GitHub
token). Three measurements, each with the guardrail off (the request does not name it) and on
(`guardrails: ["pii"]`, MASK everything, `output_parse_pii: true`):

1. the analyzer alone on the prompt text (p50 of N runs, in process);
   once for text seen before (phone verdicts cached) and once for new text;
2. whole requests through the gateway in process against `parley fake-upstream` on loopback:
   CPU per request (process time) and p50 latency, sequentially (concurrency 1);
3. streamed requests through a `parley serve` process with the anthropic SDK: median time to
   first text, 30 streams each (the upstream sends 16-character deltas 5 ms apart).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.append(os.path.join(os.path.dirname(HERE), "src"))

import httpx2 as httpx  # noqa: E402

from bodies import GUARDRAILS  # noqa: E402
from bodies import guardrail_prompt as prompt  # noqa: E402
from parley.config import build_config  # noqa: E402
from parley.config.guardrails import PII_ENTITIES  # noqa: E402
from parley.filters.guardrails.pii import PiiAnalyzer  # noqa: E402
from parley.server.app import create_app  # noqa: E402
from parley.testing.procs import FakeUpstream, Gateway  # noqa: E402

HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


def config(upstream_url: str) -> dict:
    return {
        "model_list": [
            {"model_name": "m", "params": {"model": "anthropic/m", "api_base": upstream_url, "api_key": "x"}}
        ],
        "guardrails": GUARDRAILS,
    }


def analyzer_alone(text: str, runs: int, cold: bool) -> float:
    """p50 ms of one scan; `cold`: a fresh analyzer each time (no phone verdicts remembered, as
    for text never seen before), else one analyzer (a conversation resending its history)."""
    analyzer = PiiAnalyzer(PII_ENTITIES, (), ("US",))
    for _ in range(20):
        analyzer.analyze(text)
    times = []
    for _ in range(runs):
        if cold:
            analyzer = PiiAnalyzer(PII_ENTITIES, (), ("US",))
        t0 = time.perf_counter()
        analyzer.analyze(text)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


async def in_process(upstream: FakeUpstream, text: str, requests: int) -> dict[str, tuple[float, float]]:
    app = create_app(build_config(config(upstream.url), "bench"))
    gateway = app.state.gateway
    await gateway.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://parley")
    out = {}
    try:
        for name, extra in (("off", {}), ("on", {"guardrails": ["pii"]})):
            body = {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": text}], **extra}
            for _ in range(20):
                await (await client.post("/v1/messages", json=body, headers=HEADERS)).aread()
            latencies = []
            cpu0 = time.process_time()
            for _ in range(requests):
                t0 = time.perf_counter()
                reply = await client.post("/v1/messages", json=body, headers=HEADERS)
                await reply.aread()
                latencies.append(time.perf_counter() - t0)
                assert reply.status_code == 200, reply.text[:200]
            cpu = (time.process_time() - cpu0) / requests * 1000
            out[name] = (cpu, statistics.median(latencies) * 1000)
    finally:
        await client.aclose()
        await gateway.stop()
    return out


def first_token(upstream: FakeUpstream, text: str, streams: int) -> dict[str, float]:
    import anthropic

    gw = Gateway(config(upstream.url), extra_args=["--log-level", "warning"])
    out = {}
    try:
        client = anthropic.Anthropic(base_url=gw.url, api_key="k", max_retries=0)
        reply_text = "Thanks, I will mail <EMAIL_1> and call <PHONE_1> today about the export job."
        for name, extra in (("off", {}), ("on", {"guardrails": ["pii"]})):
            times = []
            for _ in range(streams):
                upstream.script({"content": [{"type": "text", "text": reply_text}], "chunk_delay": 0.005})
                t0 = time.perf_counter()
                with client.messages.stream(
                    model="m", max_tokens=64, messages=[{"role": "user", "content": text}], extra_body=extra
                ) as stream:
                    for _piece in stream.text_stream:
                        times.append(time.perf_counter() - t0)
                        break
                    stream.until_done()
            out[name] = statistics.median(times) * 1000
    finally:
        gw.stop()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--streams", type=int, default=30)
    args = p.parse_args()
    text = prompt()
    print(f"prompt: {len(text)} characters")
    print(f"analyzer alone, text seen before: p50 {analyzer_alone(text, args.requests, False):.3f} ms")
    print(f"analyzer alone, new text: p50 {analyzer_alone(text, args.requests, True):.3f} ms")
    upstream = FakeUpstream()
    try:
        whole = asyncio.run(in_process(upstream, text, args.requests))
        for name, (cpu, p50) in whole.items():
            print(f"whole request, guardrail {name}: CPU {cpu:.3f} ms/request, p50 latency {p50:.3f} ms")
        print(
            f"  added by the guardrail: CPU {whole['on'][0] - whole['off'][0]:+.3f} ms, "
            f"p50 {whole['on'][1] - whole['off'][1]:+.3f} ms"
        )
        ttft = first_token(upstream, text, args.streams)
        for name, ms in ttft.items():
            print(f"stream, guardrail {name}: median time to first text {ms:.2f} ms")
    finally:
        upstream.stop()


if __name__ == "__main__":
    main()
