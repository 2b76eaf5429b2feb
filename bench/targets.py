"""The systems under test: parley, the bare forwarder and (optionally) the LiteLLM proxy."""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import traceback
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import orjson

import bodies
from parley.testing.procs import Gateway, RedisServer, ServerProcess, _wait_http, free_port
from upstreams import Upstream

HERE = os.path.dirname(os.path.abspath(__file__))
MASTER = "sk-bench-master-0123456789"
UPSTREAM_KEY = "sk-bench-upstream"
LITELLM_VENV = os.path.join(HERE, ".litellm-venv")


@dataclass
class Target:
    name: str
    url: str  # base URL the scenarios' paths are appended to
    headers: dict[str, str]  # credentials
    proc: ServerProcess | None
    skips: dict[str, str] = field(default_factory=dict)  # scenario -> why it was not measured
    redis_pid: int | None = None  # the redis-server it uses (its CPU is measured too)
    # a key with a budget only (issue 22's setup), when its own key has limits too (--redis): the
    # forwarder's targets are judged with it
    budget_headers: dict[str, str] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.proc.pid if self.proc is not None else None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def _tail() -> str:
    return " / ".join(traceback.format_exc().strip().splitlines()[-3:])[-600:]


def model_list(up: Upstream, slow_url: str, fast_url: str) -> list[dict]:
    """One config for parley and LiteLLM alike (parley reads LiteLLM's `litellm_params`)."""

    def anthropic(name: str, base: str) -> dict:
        return {
            "model_name": name,
            "litellm_params": {
                "model": "anthropic/claude-bench-1",
                "api_base": base,
                "api_key": UPSTREAM_KEY,
            },
        }

    return [
        anthropic("bench-native", up.anthropic),
        anthropic("bench-sse", up.anthropic_sse),
        anthropic("bench-slow", slow_url),
        anthropic("bench-fast", fast_url),
        {
            "model_name": "bench-openai",
            "litellm_params": {"model": "openai/gpt-bench-1", "api_base": up.openai, "api_key": UPSTREAM_KEY},
        },
        {
            "model_name": "bench-openai-sse",
            "litellm_params": {
                "model": "openai/gpt-bench-1",
                "api_base": up.openai_sse,
                "api_key": UPSTREAM_KEY,
            },
        },
    ]


def post_json(url: str, payload: dict, headers: dict[str, str], timeout: float = 30) -> tuple[int, bytes]:
    req = urllib.request.Request(
        url,
        data=orjson.dumps(payload),
        method="POST",
        headers={"content-type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# What every parley key gets: a budget that never binds (issue 22's "key + budget"); with `--redis`
# rate limits too (`KEY_LIMITS`).
KEY_BUDGET = {"max_budget": 1_000_000.0}

# With `--redis`: what every parley key gets, so the rows with and without Redis do the same work
# (a budget reservation and rpm/tpm/parallel counters per request; none of them ever binds).
KEY_LIMITS = {
    "max_budget": 1_000_000.0,
    "rpm_limit": 100_000_000,
    "tpm_limit": 10**12,
    "max_parallel_requests": 100_000,
}


def credential(
    base: str, notes: list[str], who: str, limits: dict | None = None, alias: str = "bench"
) -> tuple[dict[str, str], str]:
    """A virtual key from /key/generate when the gateway has one, else the master key."""
    status, body = post_json(
        base + "/key/generate",
        {"key_alias": alias, **(limits or {})},
        {"authorization": "Bearer " + MASTER},
    )
    if status == 200:
        try:
            key = orjson.loads(body)["key"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            key = None
        if isinstance(key, str):
            what = "virtual key (/key/generate)" + _with(limits or {})
            return {"x-api-key": key, "authorization": "Bearer " + key}, what
    notes.append(f"{who}: /key/generate answered {status}; the bench authenticates with the master key")
    return {"x-api-key": MASTER, "authorization": "Bearer " + MASTER}, "master key"


def _with(limits: dict) -> str:
    if "rpm_limit" in limits:
        return " with a budget and rate limits"
    return " with a budget" if "max_budget" in limits else ""


def start_parley(
    workdir: str,
    models: list[dict],
    workers: int,
    notes: list[str],
    spend: bool = True,
    observe: str | None = None,
    src: str | None = None,
    extra_env: dict[str, str] | None = None,
    redis: str | None = None,
    limits: bool = False,
    name: str | None = None,
    lease_ms: int | None = None,
) -> tuple[Target, dict[str, str]]:
    """parley from this checkout, or (`src`: another checkout's src/ directory) as `parley@base`.
    `observe`: an OTLP receiver's traces URL; metrics and traces are on, traces sent there.
    `redis`: a Redis URL for router_settings.redis_url (the target's name gets `/redis`), with
    `lease_ms` as router_settings.redis_lease_ms (None: parley's default). Its key has a budget
    (`KEY_BUDGET`); `limits`: rate limits too (`KEY_LIMITS`)."""
    name = name or ("parley" if src is None else "parley@base") + ("/redis" if redis else "")
    general: dict = {"master_key": MASTER, "stream_ping_interval": 15}
    if spend:
        general["database_url"] = f"sqlite+aiosqlite:///{workdir}/{name.replace('/', '-')}-bench.db"
    config: dict = {"model_list": models, "general_settings": general, "guardrails": bodies.GUARDRAILS}
    if redis:
        config["router_settings"] = {"redis_url": redis, "redis_key_prefix": name.replace("/", "-")}
        if lease_ms is not None:
            config["router_settings"]["redis_lease_ms"] = lease_ms
    env = dict(extra_env or {})
    if observe:
        metrics = os.path.join(workdir, f"metrics-{name}")
        os.makedirs(metrics, exist_ok=True)
        config["litellm_settings"] = {"callbacks": ["prometheus", "otel"]}
        env.update({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": observe, "PARLEY_METRICS_DIR": metrics})
    if src is not None:
        env["PYTHONPATH"] = os.path.abspath(src)
    gw = Gateway(config, env=env, workers=workers, extra_args=["--log-level", "warning"])
    headers, auth = credential(gw.url, notes, name, KEY_LIMITS if limits else KEY_BUDGET)
    target = Target(name, gw.url, headers, gw)
    if limits and spend:
        target.budget_headers, _ = credential(gw.url, notes, name, KEY_BUDGET, alias="bench-budget")
    return target, {"auth": auth}


def start_parleys(
    args: argparse.Namespace,
    workdir: str,
    notes: list[str],
    stack: contextlib.ExitStack,
    meta: dict,
    models: list[dict],
    traces: str | None,
) -> list[Target]:
    """parley, parley@base (--baseline) and each with Redis (--redis), in the order to measure
    them (--baseline-first, --redis-first); one that does not start is a note."""
    server = start_redis(args.redis_port, notes, stack, meta, args.redis_lease_ms) if args.redis else None
    redis = server.url if server is not None else None
    builds: list[str | None] = [None] + ([args.baseline] if args.baseline else [])
    if args.baseline_first:  # the first-measured target of a pair runs ~15-25% slower here
        builds.reverse()
    modes: list[str | None] = [None] + ([redis] if redis else [])
    if args.redis_first:
        modes.reverse()
    started = []
    for src in builds:
        for url in modes:
            name = ("parley" if src is None else "parley@base") + ("/redis" if url else "")
            try:
                target, info = start_parley(
                    workdir,
                    models,
                    args.workers,
                    notes,
                    spend=not args.no_spend,
                    observe=traces,
                    src=src,
                    redis=url,
                    limits=redis is not None,
                    lease_ms=args.redis_lease_ms,
                )
            except Exception:
                notes.append(f"{name} did not start: " + _tail())
                continue
            stack.callback(target.stop)
            if url and server is not None:
                target.redis_pid = server.proc.pid
            started.append(target)
            if name == "parley":
                meta["auth"] = info["auth"]
    if args.baseline and any(t.name.startswith("parley@base") for t in started):
        meta["baseline"] = args.baseline
    return started


def start_traces_receiver(stack: contextlib.ExitStack) -> str:
    """A loopback OTLP receiver that counts spans (`parley.testing.otlp`); its traces URL."""
    port = free_port()
    receiver = ServerProcess(
        [sys.executable, "-m", "parley.testing.otlp", str(port), "--count-only"], port, "/"
    )
    stack.callback(receiver.stop)
    return f"http://127.0.0.1:{port}/v1/traces"


def start_redis(
    port: int | None, notes: list[str], stack: contextlib.ExitStack, meta: dict, lease_ms: int | None = None
) -> RedisServer | None:
    """A private redis-server for the parley/redis targets; None (and a note) if it fails."""
    try:
        server = RedisServer(port or free_port())
    except Exception:
        notes.append("redis-server did not start, no rows with Redis: " + _tail())
        return None
    stack.callback(server.stop)
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    meta["redis"] = (
        f"parley with router_settings.redis_url pointing at {version.split(' sha=')[0].strip()} "
        f"on 127.0.0.1:{server.port} (no persistence); with --redis every parley key has a budget "
        "and rpm/tpm/parallel limits (none binds), with Redis or without; quota leases "
        + ("off (redis_lease_ms: 0)" if lease_ms == 0 else f"of {lease_ms or 'the default'} ms")
    )
    return server


def start_parley_granian(
    workdir: str, models: list[dict], notes: list[str], spend: bool = True
) -> Target | None:
    """parley's app factory served by granian (Rust HTTP server, uvloop, one worker) instead of
    uvicorn, as `parley/granian`; None (and a note) when granian is not importable."""
    import importlib.util

    import yaml

    if importlib.util.find_spec("granian") is None:
        notes.append("parley/granian not measured: granian is not installed (pip install granian)")
        return None
    general: dict = {"master_key": MASTER, "stream_ping_interval": 15}
    if spend:
        general["database_url"] = f"sqlite+aiosqlite:///{workdir}/parley-granian-bench.db"
    path = os.path.join(workdir, "parley-granian.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(
            {"model_list": models, "general_settings": general, "guardrails": bodies.GUARDRAILS}, f
        )
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--loop",
        "uvloop",
        "--workers",
        "1",
        "--runtime-mode",
        "st",
        "--no-ws",
        "--log-level",
        "warning",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--factory",
        "parley.server.factory:app",
    ]
    env = {"PARLEY_CONFIG": path, "PARLEY_LOG_LEVEL": "warning"}
    try:
        proc = ServerProcess(
            argv, port, "/health/liveness", env=env, log_path=os.path.join(workdir, "granian.log")
        )
    except RuntimeError as e:
        notes.append(f"parley/granian failed to start: {str(e)[-500:]}")
        return None
    headers, _ = credential(proc.url, notes, "parley/granian")
    return Target("parley/granian", proc.url, headers, proc)


def litellm_available() -> str | None:
    exe = os.path.join(LITELLM_VENV, "bin", "litellm")
    return exe if os.access(exe, os.X_OK) else None


def start_litellm(workdir: str, models: list[dict], notes: list[str]) -> Target | None:
    exe = litellm_available()
    if exe is None:
        notes.append("LiteLLM not measured: bench/.litellm-venv is missing (run `make bench-compare`)")
        return None
    import yaml

    path = os.path.join(workdir, "litellm.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(
            {
                "model_list": models,
                "general_settings": {"master_key": MASTER},
                # its /v1/messages -> OpenAI path defaults to the Responses API; parley's
                # bridge (and the bench's canned upstream) speak Chat Completions
                "litellm_settings": {
                    "drop_params": True,
                    "telemetry": False,
                    "use_chat_completions_url_for_anthropic_messages": True,
                },
            },
            f,
        )
    port = free_port()
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "DISABLE_ADMIN_UI": "True",
    }
    try:
        proc = SlowStartProcess(
            [exe, "--config", path, "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
            port,
            "/health/liveliness",
            env,
            os.path.join(workdir, "litellm.log"),
        )
    except RuntimeError as e:
        notes.append(f"LiteLLM failed to start: {str(e)[-500:]}")
        return None
    headers, _ = credential(proc.url, notes, "LiteLLM")
    return Target("litellm", proc.url, headers, proc)


def litellm_version() -> str:
    exe = os.path.join(LITELLM_VENV, "bin", "python")
    try:
        out = subprocess.run(
            [exe, "-c", "from importlib.metadata import version; print(version('litellm'))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


class SlowStartProcess(ServerProcess):
    """A ServerProcess that may take up to `timeout` seconds to answer (LiteLLM imports a lot)."""

    UNSET = ("DATABASE_URL", "PYTHONPATH")  # LiteLLM runs without a database, on its own venv

    def __init__(
        self,
        argv: list[str],
        port: int,
        ready_path: str,
        env: dict[str, str],
        log_path: str,
        timeout: float = 180.0,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115  # held by the child process, closed in stop()
        full_env = {k: v for k, v in dict(os.environ, **env).items() if k not in self.UNSET}
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
        )
        try:
            _wait_http(self.url + ready_path, self.proc, timeout)
        except Exception:
            self.stop()
            raise RuntimeError(f"{argv[0]} failed to start; log:\n{self.log()}") from None
