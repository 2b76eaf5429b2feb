"""Instructions per request of `parley serve`, counted by valgrind's callgrind: a figure that does not
move with the machine's load, for comparing builds and features on a shared machine.

    python bench/instructions.py [--requests 600] [--concurrency 8] [--stream] [--threads] [--keep DIR]
                                 [--callbacks none --callbacks prometheus,otel ...] [--src DIR]

Each configuration is one `parley serve` (one worker, a virtual key's master key, spend logging to
SQLite, the fake upstream; `--callbacks` turns on observers, traces go to a counting OTLP receiver)
run under callgrind with instrumentation off until a warm-up of 100 requests is done; then
`--requests` requests are counted, and the exporter gets 3 s to send its last batch. Every thread
of the gateway is counted (the event loop, the spend writer, the OTLP exporter ...), so moving work
off the loop does not make it look cheaper. Under valgrind a request takes ~50x longer, so the
OTLP exporter's time schedule is turned off and it sends full batches of 512 spans, as it does
under real load (a multiple of 256 requests of two spans each is whole batches). `--src` measures
another checkout's `src` (PYTHONPATH) to compare two builds. `--redis`: every configuration is
measured twice, without and with Redis (`<name>/redis`, a private redis-server), with requests
made by a virtual key with a budget and rpm/tpm/parallel limits that never bind (bench/targets.py's
`KEY_LIMITS`), so both rows do the same work: the difference is what Redis costs the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(os.path.dirname(HERE), "src"))

from observe_cost import MASTER, drive  # noqa: E402
from parley.testing.procs import (  # noqa: E402
    FakeUpstream,
    RedisServer,
    ServerProcess,
    _wait_http,
    anthropic_deployment,
    free_port,
)
from targets import KEY_BUDGET, KEY_LIMITS, credential  # noqa: E402
from targets import MASTER as KEY_MASTER  # noqa: E402  (the master key `credential` uses)

WARMUP = 100


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=False, timeout=60)


def _totals(prefix: str) -> dict[int, int]:
    """Instructions by callgrind thread number (1 is the main thread), from the dumps."""
    out: dict[int, int] = {}
    for path in glob.glob(prefix + "*"):
        thread, total = 0, 0
        with open(path) as f:
            for line in f:
                if line.startswith("thread:"):
                    thread = int(line.split()[1])
                elif line.startswith("totals:"):
                    total = int(line.split()[1])
        out[thread] = out.get(thread, 0) + total
    return out


def count(
    callbacks: list[str],
    args: argparse.Namespace,
    upstream: FakeUpstream,
    receiver_port: int,
    redis: str | None = None,
) -> dict:
    work = tempfile.mkdtemp(prefix="parley-instr-")
    try:
        config: dict = {
            "model_list": [anthropic_deployment("m", upstream)],
            "general_settings": {
                "master_key": KEY_MASTER if args.key != "master" else MASTER,
                "database_url": os.path.join(work, "spend.db"),
            },
            "litellm_settings": {"callbacks": callbacks},
        }
        if redis is not None:
            config["router_settings"] = {"redis_url": redis, "redis_key_prefix": os.path.basename(work)}
        path = os.path.join(work, "config.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(config, f)
        port, out = free_port(), os.path.join(work, "callgrind.out")
        env = dict(
            os.environ,
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"http://127.0.0.1:{receiver_port}/v1/traces",
            # batches of 512 spans, as under real load (valgrind makes the 5 s schedule send small ones)
            OTEL_BSP_SCHEDULE_DELAY="600000",
            PYTHONPATH=args.src,
        )
        argv = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            "--separate-threads=yes",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-c",
            # `parley serve`, with the database preflight's 10 s timeout lifted: under valgrind on a
            # loaded machine the migration check alone can take longer (it runs before counting)
            "import sys, parley.store.preflight as p, parley.cli as c; p.CONNECT_SECONDS = 600.0; "
            "sys.argv[0] = 'parley'; sys.exit(c.main())",
            "serve",
            "--config",
            path,
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        with open(os.path.join(work, "log"), "wb") as log:
            proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
        try:
            url = f"http://127.0.0.1:{port}"
            try:
                _wait_http(url + "/health/liveness", proc, timeout=600.0)  # valgrind starts slowly
            except RuntimeError:
                with open(os.path.join(work, "log"), errors="replace") as f:
                    print(f"parley serve did not start; its log ends:\n{f.read()[-3000:]}", file=sys.stderr)
                raise
            key = MASTER
            if args.key != "master":  # a key with a budget (and limits), with Redis or without
                notes: list[str] = []
                limits = KEY_LIMITS if args.key == "limits" else KEY_BUDGET
                headers, _what = credential(url, notes, "parley", limits)
                key = headers["x-api-key"]
                if notes:
                    raise RuntimeError("; ".join(notes))
            # a request under valgrind on a loaded machine can take longer than drive's usual 30 s
            asyncio.run(drive(url, WARMUP, args.concurrency, args.stream, timeout=600, key=key))
            _control(proc.pid, "--instr=on")
            asyncio.run(drive(url, args.requests, args.concurrency, args.stream, timeout=600, key=key))
            time.sleep(3)  # the OTLP exporter sends its last full batch: its work is counted too
            _control(proc.pid, "--instr=off")
            _control(proc.pid, "--dump")
        finally:
            proc.terminate()
            proc.wait(120)
        by_thread = _totals(out)
        if args.keep:  # each configuration's dumps in a directory of its own (same file names)
            name = (",".join(callbacks) or "none") + f"-{args.key}" + ("-redis" if redis else "")
            kept = os.path.join(args.keep, name)
            os.makedirs(kept, exist_ok=True)
            for dump in glob.glob(out + "*"):
                shutil.copy(dump, kept)
        n = args.requests
        main = by_thread.get(1, 0) / n
        total = sum(by_thread.values()) / n
        threads = {k: v / n for k, v in sorted(by_thread.items())}
        return {"total": total, "main": main, "others": total - main, "threads": threads}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _print_threads(name: str, threads: dict[int, float]) -> None:
    """One row per callgrind thread (numbered in creation order; 1 is the event loop's)."""
    for number, per_request in threads.items():
        if per_request >= 500:
            print(f"| {name} thread {number} | {per_request / 1e3:.1f} | | | |", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=768, help="a multiple of 256: whole OTLP batches")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--stream", action="store_true", help="streamed requests")
    p.add_argument(
        "--callbacks",
        action="append",
        help="observers for one configuration (comma-separated; `none`); repeat to compare",
    )
    p.add_argument("--threads", action="store_true", help="also instructions/request of each thread")
    p.add_argument("--keep", help="copy the callgrind dumps here, one directory per configuration")
    p.add_argument("--src", default=os.path.join(os.path.dirname(HERE), "src"), help="the parley to measure")
    p.add_argument("--redis", action="store_true", help="each configuration without and with Redis")
    p.add_argument(
        "--key",
        choices=["master", "budget", "limits"],
        help="the requests' credential: the master key, a virtual key with a budget (KEY_BUDGET), or "
        "with a budget and rpm/tpm/parallel limits (KEY_LIMITS; the default with --redis)",
    )
    args = p.parse_args()
    args.key = args.key or ("limits" if args.redis else "master")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("bench/instructions.py needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    configs = args.callbacks or ["none", "prometheus", "otel", "prometheus,otel"]
    upstream = FakeUpstream()
    receiver_port = free_port()
    receiver = ServerProcess(
        [sys.executable, "-m", "parley.testing.otlp", str(receiver_port), "--count-only"], receiver_port, "/"
    )
    redis = RedisServer(free_port()) if args.redis else None
    base = None
    try:
        print("| callbacks | k instructions/request | main thread | other threads | vs first |")
        print("|---|---:|---:|---:|---:|")
        runs = [(name, None) for name in configs]
        if redis is not None:
            runs = [run for name in configs for run in ((name, None), (name + "/redis", redis.url))]
        for name, redis_url in runs:
            callbacks = [c for c in name.removesuffix("/redis").split(",") if c and c != "none"]
            r = count(callbacks, args, upstream, receiver_port, redis_url)
            base = base or r["total"]
            print(
                f"| {name} | {r['total'] / 1e3:.0f} | {r['main'] / 1e3:.0f} | {r['others'] / 1e3:.0f} "
                f"| {100 * (r['total'] / base - 1):+.1f}% |",
                flush=True,
            )
            if args.threads:
                _print_threads(name, r["threads"])
    finally:
        receiver.stop()
        upstream.stop()
        if redis is not None:
            redis.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
