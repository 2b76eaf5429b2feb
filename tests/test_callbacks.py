"""Custom logging callbacks (LiteLLM's CustomLogger methods) in a real `parley serve`: records arrive
with what the client saw, and a callback that raises, hangs or blocks never slows a request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import anthropic
import pytest

from parley.config import ConfigError, build_config
from parley.filters.callbacks import load_callback
from parley.testing.procs import Gateway, anthropic_deployment

CALLBACKS = """
import asyncio, json, os, time

OUT = os.environ["CALLBACK_OUT"]


def _write(kind, kwargs, start_time, end_time):
    row = dict(kwargs["standard_logging_object"], kind=kind, elapsed=(end_time - start_time).total_seconds())
    with open(OUT, "a") as f:
        f.write(json.dumps(row) + "\\n")


class Recorder:
    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        _write("success", kwargs, start_time, end_time)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        _write("failure", kwargs, start_time, end_time)


class Broken:
    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        raise RuntimeError("this callback is broken")


class SlowAsync:
    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        await asyncio.sleep(60)


class SlowSync:
    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        time.sleep(60)


recorder = Recorder()
"""

ASK = [{"role": "user", "content": "log me"}]


@pytest.fixture
def callback_module(tmp_path):
    (tmp_path / "my_callbacks.py").write_text(CALLBACKS)
    return tmp_path


def test_records_arrive_and_bad_callbacks_never_slow_requests(callback_module, upstream):
    out = callback_module / "records.jsonl"
    env = {
        "PYTHONPATH": os.pathsep.join([str(callback_module), os.environ.get("PYTHONPATH", "")]),
        "CALLBACK_OUT": str(out),
    }
    config = {
        "model_list": [anthropic_deployment("claude-logged", upstream, model="up-model")],
        "litellm_settings": {
            "callbacks": ["my_callbacks.Broken", "my_callbacks.SlowAsync", "my_callbacks.SlowSync"],
            "success_callback": ["my_callbacks.recorder"],
            "failure_callback": ["my_callbacks.recorder"],
        },
    }
    gw = Gateway(config, env=env)
    try:
        client = anthropic.Anthropic(base_url=gw.url, api_key="sk-any", max_retries=0)
        ids, slowest = [], 0.0
        for _ in range(4):
            started = time.monotonic()
            raw = client.messages.with_raw_response.create(model="claude-logged", max_tokens=16, messages=ASK)
            slowest = max(slowest, time.monotonic() - started)
            ids.append((raw.headers["request-id"], raw.parse()))
        with pytest.raises(anthropic.NotFoundError):
            client.messages.create(model="not-served", max_tokens=16, messages=ASK)
        assert slowest < 1.0  # the slow callbacks take 60 s each; nobody waits for them
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 5):
            time.sleep(0.1)
    finally:
        gw.stop()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    successes = [r for r in rows if r["kind"] == "success"]
    assert [r["id"] for r in successes][:1] == [ids[0][0]]
    assert {r["id"] for r in successes} == {i for i, _ in ids}
    first = successes[0]
    message = ids[0][1]
    assert first["model"] == "up-model" and first["model_group"] == "claude-logged"
    assert first["prompt_tokens"] == message.usage.input_tokens
    assert first["completion_tokens"] == message.usage.output_tokens
    assert first["status_code"] == 200 and first["elapsed"] >= 0
    [failure] = [r for r in rows if r["kind"] == "failure"]
    assert failure["status_code"] == 404 and failure["error_type"] == "not_found_error"
    assert "this callback is broken" in gw.log()  # logged, not raised


def test_a_callback_that_cannot_be_loaded_stops_serve_with_one_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "model_list: [{model_name: m, params: {model: mock/m}}]\n"
        "litellm_settings: {callbacks: [no_such_module.handler]}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "parley", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "parley: config error: litellm_settings.callbacks: cannot load 'no_such_module.handler': "
        "No module named 'no_such_module'"
    ]


def test_callback_names_are_checked_at_load(tmp_path):
    doc = {"model_list": [], "litellm_settings": {"success_callback": ["lunary"]}}
    with pytest.raises(ConfigError, match=r"c.yaml: litellm_settings: callback 'lunary' is not supported"):
        build_config(doc, "c.yaml", env={})
    config = build_config(
        {"model_list": [], "litellm_settings": {"callbacks": ["prometheus", "langfuse"]}}, "c", {}
    )
    assert config.observability.prometheus and config.observability.otel
    assert config.ignored == []


def test_a_callback_module_beside_the_config_is_found(callback_module, monkeypatch):
    monkeypatch.setenv("CALLBACK_OUT", str(callback_module / "x"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert type(load_callback("my_callbacks.Recorder", str(callback_module))).__name__ == "Recorder"
