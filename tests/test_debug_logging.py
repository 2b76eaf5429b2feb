"""`--detailed_debug` / `litellm_settings.set_verbose` show what the router does, and no log line
ever carries a key; `litellm_settings.json_logs` makes every log line one JSON object."""

from __future__ import annotations

import logging
import os
import sys

import anthropic
import orjson

from keys_support import Admin
from parley.logs import MaskingFormatter
from parley.testing.procs import FakeUpstream, ServerProcess, free_port

MASTER = "sk-master-debug-0123456789"
UPSTREAM_KEY = "sk-ant-upstream-secret-abcdef"


def start(tmp_path, upstream: FakeUpstream, extra: str = "", *flags: str) -> ServerProcess:
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "model_list:\n"
        f"  - model_name: m\n    litellm_params: {{model: anthropic/m, api_base: '{upstream.url}', "
        f"api_key: {UPSTREAM_KEY}}}\n"
        f"general_settings: {{master_key: {MASTER}}}\n" + extra
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PARLEY_MASTER_KEY", "REDIS_URL")}
    argv = [sys.executable, "-m", "parley", "--config", str(path), "--port", str(port), *flags]
    return ServerProcess(argv, port, "/health/liveness", env=env)


def use(gw: ServerProcess) -> str:
    key = Admin(gw.url, MASTER).post("/key/generate", {})["key"]
    client = anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)
    client.messages.create(model="m", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    return key


def test_detailed_debug_logs_router_tries_and_never_a_key(tmp_path, upstream):
    gw = start(tmp_path, upstream, "", "--detailed_debug")
    try:
        key = use(gw)
    finally:
        gw.stop()
    log = gw.log()
    assert "DEBUG parley.router: " in log and "model 'm' try 1/3 on m#0 (anthropic/m at" in log
    for secret in (MASTER, UPSTREAM_KEY, key):
        assert secret not in log


def test_set_verbose_in_the_config_is_debug_too(tmp_path, upstream):
    gw = start(tmp_path, upstream, "litellm_settings: {set_verbose: true}\n")
    try:
        use(gw)
    finally:
        gw.stop()
    assert "logging:    debug (keys masked)" in gw.log() and "DEBUG parley.router: " in gw.log()


def test_json_logs(tmp_path, upstream):
    gw = start(tmp_path, upstream, "litellm_settings: {json_logs: true}\n")
    try:
        use(gw)
    finally:
        gw.stop()
    banner_done = False
    records = []
    for line in gw.log().splitlines():
        if line.startswith("{"):
            banner_done = True
            records.append(orjson.loads(line))
        else:
            assert not banner_done or not line.strip(), f"not JSON: {line}"
    assert any(r["logger"] == "parley.access" for r in records)
    assert any(r["logger"].startswith("uvicorn") for r in records)


def test_the_formatter_masks_configured_secrets_and_anything_key_shaped():
    fmt = MaskingFormatter(secrets=["hunter2-long-secret"])
    record = logging.LogRecord("x", logging.DEBUG, "f", 1, "%s", ("",), None)
    record.args = (
        "auth hunter2-long-secret Bearer abc.def sk-ant-api03-AAAABBBBCCCCDDDD x-api-key: sk-12345678",
    )
    line = fmt.format(record)
    assert (
        "hunter2" not in line and "abc.def" not in line and "AAAABBBB" not in line and "12345678" not in line
    )
    assert "Bearer ***" in line and "sk-ant***" in line
