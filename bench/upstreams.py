"""The upstreams the bench calls: nginx with canned bodies (or parley's fake upstream as a fallback)
and the rate-controlled streaming upstream."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

import orjson

import bodies
from parley.testing.procs import FakeUpstream, ServerProcess, free_port

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Upstream:
    """Where each kind of reply comes from. `proc` is the server process (for stopping)."""

    kind: str  # "nginx" or "fake-upstream"
    anthropic: str  # base URL; + /v1/messages answers a canned message
    anthropic_sse: str  # + /v1/messages answers a canned stream
    openai: str  # base URL including /v1; + /chat/completions answers a canned completion
    openai_sse: str
    proc: ServerProcess
    note: str = ""

    def stop(self) -> None:
        self.proc.stop()


def ensure_tool(binary: str, package: str, log: list[str]) -> str | None:
    """The path of `binary`, installing Debian's `package` with apt-get when it is missing."""
    found = shutil.which(binary) or (f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        log.append(f"{binary} is not installed and apt-get is not usable here (needs root)")
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (
        ["apt-get", "install", "-y", "-qq", package],
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", package],
    ):
        try:
            subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            log.append(f"{' '.join(argv)}: {e}")
        found = shutil.which(binary) or (
            f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None
        )
        if found:
            return found
    log.append(f"could not install {package} with apt-get")
    return None


def _nginx_string(text: str) -> str:
    """`text` as a single-quoted nginx string (canned bodies hold no `$`, so nothing interpolates)."""
    assert "$" not in text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def nginx_conf(workdir: str, port: int) -> str:
    canned = {
        "/v1/messages": ("application/json", orjson.dumps(bodies.ANTHROPIC_MESSAGE).decode()),
        "/v1/chat/completions": ("application/json", orjson.dumps(bodies.OPENAI_COMPLETION).decode()),
        "/sse/v1/messages": ("text/event-stream", bodies.anthropic_stream(bodies.STREAM_TEXTS)),
        "/sse/v1/chat/completions": ("text/event-stream", bodies.openai_stream(bodies.STREAM_TEXTS)),
        "/health": ("text/plain", "ok"),
    }
    locations = "\n".join(
        f"        location = {path} {{ default_type {ctype}; return 200 {_nginx_string(text)}; }}"
        for path, (ctype, text) in canned.items()
    )
    temp = "\n".join(
        f"    {name}_temp_path {workdir}/{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log {workdir}/access.log;
{temp}
    client_max_body_size 64m;
    client_body_buffer_size 1m;
    keepalive_requests 10000000;
    keepalive_timeout 300;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
{locations}
    }}
}}
"""


def start_nginx(workdir: str, log: list[str]) -> Upstream | None:
    binary = ensure_tool("nginx", "nginx-light", log)
    if binary is None:
        return None
    os.makedirs(workdir, exist_ok=True)
    port = free_port()
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(nginx_conf(workdir, port))
    try:
        proc = ServerProcess(
            [binary, "-p", workdir, "-c", conf], port, "/health", log_path=os.path.join(workdir, "nginx.out")
        )
    except RuntimeError as e:
        log.append(f"nginx failed to start: {e}")
        return None
    base = proc.url
    return Upstream("nginx", base, base + "/sse", base + "/v1", base + "/sse/v1", proc)


def start_fake(log: list[str]) -> Upstream:
    """parley's own fake upstream: answers by the body's `stream` flag, so every base is the same."""
    proc = FakeUpstream()
    note = (
        "NOTE: nginx not used (unavailable, or --no-nginx); the upstream is parley's fake upstream "
        "(Python), which is itself a bottleneck: absolute requests/s are not comparable with an nginx run"
    )
    log.append(note)
    return Upstream("fake-upstream", proc.url, proc.url, proc.url + "/v1", proc.url + "/v1", proc, note)


def start_upstream(workdir: str, log: list[str], allow_nginx: bool = True) -> Upstream:
    return (start_nginx(workdir, log) if allow_nginx else None) or start_fake(log)


def start_stream_upstream(workdir: str, events: int, interval: float) -> ServerProcess:
    port = free_port()
    env = {"PYTHONPATH": os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")])}
    return ServerProcess(
        [
            sys.executable,
            os.path.join(HERE, "stream_upstream.py"),
            "--port",
            str(port),
            "--events",
            str(events),
            "--interval",
            str(interval),
        ],
        port,
        "/health",
        env=env,
        log_path=os.path.join(workdir, "stream-upstream.log"),
    )


def start_bare_forwarder(workdir: str, upstream: Upstream) -> ServerProcess:
    port = free_port()
    env = {"PYTHONPATH": os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")])}
    return ServerProcess(
        [
            sys.executable,
            os.path.join(HERE, "bare_forwarder.py"),
            "--port",
            str(port),
            "--upstream",
            upstream.anthropic,
            "--stream-upstream",
            upstream.anthropic_sse,
        ],
        port,
        "/health",
        env=env,
        log_path=os.path.join(workdir, "bare-forwarder.log"),
    )
