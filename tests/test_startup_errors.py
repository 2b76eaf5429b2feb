"""Every startup failure is one line on stderr naming the file, the setting and what to do, with
exit status 2 and no traceback; the banner appears only once the port is bound. Driven through the
CLI as a user runs it."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import asyncpg
import pytest

from keys_support import Admin, create_pg_database, drop_pg_database
from parley.testing.procs import ServerProcess, free_port

MODEL = "model_list: [{model_name: m, params: {model: mock/m}}]\n"
CLEAN_ENV = {
    k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PARLEY_MASTER_KEY", "REDIS_URL")
}


def write(tmp_path, text: str) -> str:
    path = tmp_path / "cfg.yaml"
    path.write_text(MODEL + text)
    return str(path)


def fails(tmp_path, text: str, *args: str) -> str:
    """Run `parley serve`; assert it fails the way an operator wants, return its one line."""
    path = write(tmp_path, text)
    result = subprocess.run(
        [sys.executable, "-m", "parley", "serve", "--config", path, "--port", str(free_port()), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=CLEAN_ENV,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "listening" not in result.stderr
    assert lines[0].startswith("parley: ") and "cfg.yaml: " in lines[0]
    return lines[0]


def test_postgres_down(tmp_path):
    port = free_port()
    line = fails(
        tmp_path, f"general_settings: {{master_key: sk-1, database_url: 'postgresql://127.0.0.1:{port}/x'}}"
    )
    assert f"general_settings.database_url: cannot reach PostgreSQL at 127.0.0.1:{port}" in line
    assert "start it or fix the host and port" in line


def test_postgres_database_missing(tmp_path):
    url = "postgresql://127.0.0.1:5432/parley_no_such_db_1234"
    line = fails(tmp_path, f"general_settings: {{master_key: sk-1, database_url: '{url}'}}")
    assert "database 'parley_no_such_db_1234' does not exist on 127.0.0.1:5432" in line
    assert "createdb parley_no_such_db_1234" in line


def test_sqlite_folder_missing_and_file_not_writable(tmp_path):
    line = fails(
        tmp_path, "general_settings: {master_key: sk-1, database_url: 'sqlite:////nonexistent/dir/p.db'}"
    )
    assert "general_settings.database_url: folder /nonexistent/dir does not exist" in line
    line = fails(tmp_path, "general_settings: {master_key: sk-1, database_url: 'sqlite:////proc/p.db'}")
    assert "cannot write the SQLite file /proc/p.db" in line and "fix the permissions" in line


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://u:p@127.0.0.1/x", "unsupported database 'mysql': use sqlite"),
        ("mongodb://127.0.0.1/x", "unsupported database 'mongodb': use sqlite"),
        ("postgresql://127.0.0.1:5432/test?sslmode=sometimes", "sslmode='sometimes': use one of disable"),
        ("postgresql://127.0.0.1:5432/test?pgbouncer=true", "query parameter 'pgbouncer' is not supported"),
        (
            "postgresql://127.0.0.1:5432/test?connection_limit=zero",
            "connection_limit='zero': must be a positive",
        ),
    ],
)
def test_database_urls_that_cannot_work(tmp_path, url, expected):
    line = fails(tmp_path, f"general_settings: {{master_key: sk-1, database_url: '{url}'}}")
    assert line.startswith("parley: config error: ") and "general_settings.database_url: " in line
    assert expected in line


def test_sslmode_require_on_a_server_without_tls(tmp_path):
    line = fails(
        tmp_path,
        "general_settings: {master_key: sk-1, database_url: 'postgresql://127.0.0.1:5432/test?sslmode=require'}",
    )
    assert "general_settings.database_url: PostgreSQL at 127.0.0.1:5432 does not offer TLS" in line
    assert "use sslmode=disable or prefer" in line


def test_a_check_only_a_provider_makes_is_one_line_too(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "model_list: [{model_name: m, params: {model: openai/m, api_base: 'http://x',"
        " max_tokens_field: bogus}}]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "parley", "--config", str(path), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env=CLEAN_ENV,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"parley: config error: {path}: model_list entry 'm': params.max_tokens_field:")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "router_settings: {routing_strategy: fastest}",
            "router_settings.routing_strategy: unknown 'fastest'",
        ),
        ("router_settings: {num_retries: -1}", "router_settings.num_retries: must be a non-negative integer"),
        ("router_settings: {fallbacks: m}", "router_settings.fallbacks: must be a list like"),
        (
            "router_settings: {cooldown_time: soon}",
            "router_settings.cooldown_time: must be a non-negative number",
        ),
        (
            "litellm_settings: {num_retries: many}",
            "litellm_settings.num_retries: must be a non-negative integer",
        ),
    ],
)
def test_bad_router_values(tmp_path, text, expected):
    assert expected in fails(tmp_path, text)


def test_busy_port_is_one_line_and_no_banner(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write(tmp_path, "")
        result = subprocess.run(
            [sys.executable, "-m", "parley", "serve", "--config", path, "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env=CLEAN_ENV,
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"parley: --port {port}: cannot listen on 127.0.0.1:{port} (Address already in use); stop what "
        "uses it or pass another --port (make run PORT=N)"
    ]


def serve(tmp_path, text: str, env: dict[str, str] | None = None) -> ServerProcess:
    port = free_port()
    argv = [sys.executable, "-m", "parley", "--config", write(tmp_path, text), "--port", str(port)]
    return ServerProcess(argv, port, "/health/liveness", env={**CLEAN_ENV, **(env or {})})


def test_absolute_sqlite_path_with_three_slashes(tmp_path):
    """`sqlite:///tmp/x/p.db` means /tmp/x/p.db (the folder exists only at the root)."""
    assert str(tmp_path).startswith("/")
    db = tmp_path / "abs.db"
    gw = serve(tmp_path, f"general_settings: {{master_key: sk-1, database_url: 'sqlite://{db}'}}")
    try:
        assert Admin(gw.url, "sk-1").post("/key/generate", {})["key"].startswith("sk-")
    finally:
        gw.stop()
    assert db.exists()
    assert f"database:   SQLite file {db}" in gw.log()


def test_postgres_url_parameters_are_translated(tmp_path):
    name, url = create_pg_database()
    try:
        _fetch(url, "CREATE SCHEMA gw", None)
        query = "sslmode=disable&connection_limit=3&pool_timeout=5&application_name=parley-gw&schema=gw"
        gw = serve(tmp_path, f"general_settings: {{master_key: sk-1, database_url: '{url}?{query}'}}")
        try:
            assert Admin(gw.url, "sk-1").post("/key/generate", {"key_alias": "a"})["key_alias"] == "a"
            names = _fetch(url, "SELECT application_name FROM pg_stat_activity WHERE datname = $1", name)
        finally:
            gw.stop()
        assert "parley-gw" in names
        assert "parley_keys" in _fetch(url, "SELECT tablename FROM pg_tables WHERE schemaname = $1", "gw")
    finally:
        drop_pg_database(name)


def _fetch(url: str, query: str, arg: str | None) -> list[str]:
    async def run() -> list[str]:
        conn = await asyncpg.connect(url)
        try:
            return [r[0] for r in await conn.fetch(query, *([arg] if arg else []))]
        finally:
            await conn.close()

    return asyncio.run(run())


def test_redis_down_with_a_database_still_serves(tmp_path):
    redis_port = free_port()  # nothing listens there
    gw = serve(
        tmp_path,
        "general_settings: {master_key: sk-1}\n"
        f"router_settings: {{redis_url: 'redis://127.0.0.1:{redis_port}'}}\n",
    )
    try:
        admin = Admin(gw.url, "sk-1")
        key = admin.post("/key/generate", {})["key"]
        import anthropic

        client = anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)
        reply = client.messages.create(model="m", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
        assert reply.content
    finally:
        gw.stop()
    log = gw.log()
    assert "Traceback" not in log
    assert log.count(f"warning: Redis at redis://127.0.0.1:{redis_port} is unreachable") == 1
