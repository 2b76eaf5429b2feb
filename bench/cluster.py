"""The scale-out topology's pieces (bench/scaleout.py): a throwaway Postgres database, parley
instances sharing it and one Redis, and nginx as the load balancer in front of them, configured from
deploy/nginx.conf as tests/test_deploy_topology.py does."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import subprocess
import time
import urllib.request
from dataclasses import dataclass

import procstats
from parley.testing.procs import Gateway, free_port

HERE = os.path.dirname(os.path.abspath(__file__))
DEPLOY_NGINX = os.path.join(os.path.dirname(HERE), "deploy", "nginx.conf")
INSTANCE_ENV = "PARLEY_BENCH_INSTANCE"  # each instance's deployment id: its spend rows' model_id
PRICES = {"input_cost_per_token": 3e-6, "output_cost_per_token": 15e-6}  # so spend is not 0


class Postgres:
    """A database `parley_bench_<random>` on the server at `server` (trust auth), dropped by `drop`."""

    def __init__(self, server: str = "postgresql://127.0.0.1:5432") -> None:
        self.server = server.rstrip("/")
        self.name = "parley_bench_" + secrets.token_hex(5)
        self.url = f"{self.server}/{self.name}"
        self._admin(f'CREATE DATABASE "{self.name}"')

    def _admin(self, statement: str) -> None:
        async def run() -> None:
            import asyncpg

            conn = await asyncpg.connect(self.server + "/postgres", timeout=10)
            try:
                await conn.execute(statement)
            finally:
                await conn.close()

        asyncio.run(run())

    def fetch(self, query: str, *args: object) -> list[tuple]:
        async def run() -> list[tuple]:
            import asyncpg

            conn = await asyncpg.connect(self.url, timeout=10)
            try:
                return [tuple(r) for r in await conn.fetch(query, *args)]
            finally:
                await conn.close()

        return asyncio.run(run())

    def backend_pids(self) -> list[int]:
        """The server processes serving connections to this database (the instances' pools)."""
        rows = self.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", self.name
        )
        return [r[0] for r in rows]

    def drop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class Sqlite:
    """The SQLite file a gateway logs spend to, read with the same queries as `Postgres`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.url = f"sqlite+aiosqlite:///{path}"

    def fetch(self, query: str, *args: object) -> list[tuple]:
        import sqlite3

        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(re.sub(r"\$\d+", "?", query), args).fetchall()
        finally:
            conn.close()

    def backend_pids(self) -> list[int]:
        return []  # SQLite runs inside the gateway's process


def backends_cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds of each Postgres backend process (readable in /proc whoever owns it)."""
    return {p: procstats.cpu_seconds(p) for p in pids}


def spend_by_instance(db: Postgres | Sqlite) -> dict[str, tuple[int, float]]:
    """Spend rows and their spend, per instance (the deployment id is the instance's name)."""
    rows = db.fetch("SELECT model_id, count(*), coalesce(sum(spend), 0) FROM parley_spend_logs GROUP BY 1")
    return {str(m): (int(n), float(s)) for m, n, s in rows}


def key_spend(db: Postgres | Sqlite, key_hash: str) -> tuple[float, int, float]:
    """The key's recorded spend, and the count and sum of its spend rows."""
    spend = db.fetch("SELECT spend FROM parley_keys WHERE token = $1", key_hash)
    rows = db.fetch(
        "SELECT count(*), coalesce(sum(spend), 0) FROM parley_spend_logs WHERE api_key = $1", key_hash
    )
    return (float(spend[0][0]) if spend else float("nan")), int(rows[0][0]), float(rows[0][1])


def model_list(anthropic_base: str) -> list[dict]:
    """One priced model on the canned upstream; the deployment id comes from the environment, so
    every instance runs the same file and still signs its own spend rows."""
    return [
        {
            "model_name": "bench-native",
            "litellm_params": {
                "model": "anthropic/claude-bench-1",
                "api_base": anthropic_base,
                "api_key": "sk-bench-upstream",
                "id": f"os.environ/{INSTANCE_ENV}",
                **PRICES,
            },
        }
    ]


def gateway_config(models: list[dict], master: str, database_url: str, redis_url: str | None) -> dict:
    general = {"master_key": master, "database_url": database_url, "stream_ping_interval": 15}
    config: dict = {"model_list": models, "general_settings": general}
    if redis_url:
        config["router_settings"] = {"redis_url": redis_url}
    return config


def start_instance(name: str, config: dict, workdir: str, redis_prefix: str) -> Gateway:
    """`parley serve`, one worker, its spend journal under `workdir`."""
    env = {
        INSTANCE_ENV: name,
        "XDG_STATE_HOME": os.path.join(workdir, "state-" + name),
        "PARLEY_REDIS_PREFIX": redis_prefix,
        "DATABASE_URL": config["general_settings"]["database_url"],
        # an inherited REDIS_URL would turn Redis on where the config has none ("" is none)
        "REDIS_URL": config.get("router_settings", {}).get("redis_url", ""),
    }
    return Gateway(config, env=env, workers=1, extra_args=["--log-level", "warning"])


LOG_FORMAT = "log_format bench '$upstream_addr $upstream_status $status';"


def balancer_conf(workdir: str, port: int, backends: list[int]) -> str:
    """deploy/nginx.conf with loopback backends, a listen port, temp paths in `workdir` and an
    access log of which backend served each request (its only change of behaviour)."""
    with open(DEPLOY_NGINX) as f:
        conf = f.read()
    servers = re.findall(r"^\s*server parley-\d+:4000[^;]*;\n", conf, flags=re.M)
    if not servers:
        raise RuntimeError(f"{DEPLOY_NGINX}: no `server parley-N:4000` lines")
    template = servers[0]
    for line in servers:
        conf = conf.replace(line, "")
    lines = "".join(re.sub(r"parley-\d+:4000", f"127.0.0.1:{p}", template) for p in backends)
    conf = conf.replace("    upstream parley {\n", "    upstream parley {\n" + lines, 1)
    conf = conf.replace("listen 4000;", f"listen 127.0.0.1:{port} backlog=4096;")
    temp = "".join(
        f"    {n}_temp_path {workdir}/{n};\n" for n in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    log = f"    {LOG_FORMAT}\n    access_log {workdir}/upstreams.log bench buffer=64k flush=200ms;\n"
    conf = conf.replace("    access_log off;\n", log + temp, 1)
    if "access_log off" in conf or f"127.0.0.1:{port}" not in conf:
        raise RuntimeError(f"{DEPLOY_NGINX} changed shape; bench/cluster.py cannot adapt it")
    return conf


@dataclass
class Balancer:
    """nginx (one worker process) in front of parley instances."""

    proc: subprocess.Popen
    workdir: str
    url: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log_path(self) -> str:
        return os.path.join(self.workdir, "upstreams.log")

    def offset(self) -> int:
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def served_since(self, offset: int) -> dict[str, list[int]]:
        """Per backend port (`-`: none was reached), the requests logged since `offset`: [sent,
        answered]. Requests the client gave up on (wrk stopping mid-request) are sent, not answered."""
        counts: dict[str, list[int]] = {}
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            for line in f.read().decode("ascii", "replace").splitlines():
                addr, _, rest = line.partition(" ")
                # a retried request names every backend it tried: the last one answered
                port = addr.rsplit(",", 1)[-1].strip().rpartition(":")[2] or "-"
                upstream_status = rest.split(" ", 1)[0].rsplit(",", 1)[-1].strip()
                entry = counts.setdefault(port, [0, 0])
                entry[0] += 1
                entry[1] += upstream_status.isdigit()
        return counts

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_balancer(nginx: str, workdir: str, backends: list[int]) -> Balancer:
    os.makedirs(workdir, exist_ok=True)
    port = free_port()
    path = os.path.join(workdir, "nginx.conf")
    with open(path, "w") as f:
        f.write(balancer_conf(workdir, port, backends))
    err = os.path.join(workdir, "error.log")
    argv = [nginx, "-p", workdir, "-c", path, "-e", err, "-g", f"daemon off; pid {workdir}/nginx.pid;"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lb = Balancer(proc, workdir, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 15
    while True:
        try:
            with urllib.request.urlopen(lb.url + "/health/liveness", timeout=2):
                return lb
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                lb.stop()
                text = ""
                with contextlib.suppress(OSError), open(err, errors="replace") as f:
                    text = f.read()
                raise RuntimeError(f"the load balancer did not start: {text[-500:]}") from None
            time.sleep(0.1)
