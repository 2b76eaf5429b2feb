"""The `parley` command as a newcomer meets it: help, the banner, quick start, config errors."""

from __future__ import annotations

import os
import subprocess
import sys

import anthropic

from parley.testing.procs import ServerProcess, free_port


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "parley", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def test_help_texts():
    top = run("--help")
    assert top.returncode == 0 and "serve" in top.stdout and "fake-upstream" in top.stdout
    serve = run("serve", "--help")
    for flag in ("--config", "--model", "--host", "--port", "--workers"):
        assert flag in serve.stdout
    assert "127.0.0.1" in serve.stdout


def test_config_error_exits_2_with_location(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text(
        "model_list:\n  - model_name: x\n"
        "    params: {model: anthropic/x, api_key: os.environ/UNSET_FOR_TEST}\n"
    )
    result = run("serve", "--config", str(bad))
    assert result.returncode == 2
    assert (
        "c.yaml: model_list[0] (model_name 'x'): params.api_key: environment variable UNSET_FOR_TEST"
        in result.stderr
    )


def test_default_config_serves_mock_like_make_run():
    """What `make run` starts: the shipped config, answering with the offline mock model."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")}
    proc = ServerProcess(
        [sys.executable, "-m", "parley", "serve", "--config", "config/default.yaml", "--port", str(port)],
        port,
        "/health/readiness",
        env=env,
    )
    try:
        client = anthropic.Anthropic(base_url=proc.url, api_key="any", max_retries=0)
        reply = client.messages.create(
            model="parley-mock", max_tokens=32, messages=[{"role": "user", "content": "hello offline"}]
        )
        assert "hello offline" in reply.content[0].text
    finally:
        proc.stop()
    log = proc.log()
    assert f"listening:  http://127.0.0.1:{port}" in log
    assert "auth:       OFF" in log and "parley-mock  ->  mock/parley-mock" in log
    assert "config:     config/default.yaml" in log


def test_quick_start_with_model_flag(fake_upstream):
    port = free_port()
    proc = ServerProcess(
        [
            sys.executable,
            "-m",
            "parley",
            "serve",
            "--model",
            "anthropic/claude-sonnet-4-5",
            "--port",
            str(port),
        ],
        port,
        "/health/liveness",
        env={"ANTHROPIC_API_KEY": "sk-ant-quick"},
    )
    try:
        models = anthropic.Anthropic(base_url=proc.url, api_key="x", max_retries=0).models.list()
        assert {m.id for m in models} == {"claude-sonnet-4-5", "anthropic/claude-sonnet-4-5"}
    finally:
        proc.stop()
    assert "claude-sonnet-4-5  ->  anthropic/claude-sonnet-4-5" in proc.log()
