"""Start parley and the fake upstream as real processes on loopback (tests and benchmarks)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

import orjson
import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status < 500:
                    return
        except Exception:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


class ServerProcess:
    """A child process serving HTTP on 127.0.0.1:`port`."""

    def __init__(
        self,
        argv: list[str],
        port: int,
        ready_path: str,
        env: dict[str, str] | None = None,
        log_path: str | None = None,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path or tempfile.mktemp(prefix="parley-proc-", suffix=".log")
        self._log = open(self.log_path, "wb")  # noqa: SIM115  # held by the child process, closed in stop()
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
        )
        try:
            _wait_http(self.url + ready_path, self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"{argv} failed to start; log:\n{self.log()}") from None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def kill(self) -> None:
        """kill -9 of the process (and its process group: workers too), then close the log."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.stop()

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class FakeUpstream(ServerProcess):
    """`parley fake-upstream` in a child process, with its HTTP control API wrapped."""

    def __init__(self, port: int | None = None) -> None:
        port = port or free_port()
        super().__init__(
            [sys.executable, "-m", "parley", "fake-upstream", "--port", str(port)], port, "/_fake/requests"
        )

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = orjson.dumps(payload) if payload is not None else None
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return orjson.loads(r.read())

    def script(self, *specs: dict) -> None:
        """Queue scripted replies (see parley.testing.fake_anthropic for the spec)."""
        self._call("POST", "/_fake/script", list(specs))

    def reset(self) -> None:
        self._call("POST", "/_fake/reset", {})

    def requests(self) -> list[dict]:
        return self._call("GET", "/_fake/requests")

    def events(self) -> list[dict]:
        return self._call("GET", "/_fake/events")

    def last_body(self) -> dict:
        return orjson.loads(self.requests()[-1]["body"])


class Gateway(ServerProcess):
    """`parley serve` in a child process, from a config given as a dict."""

    def __init__(
        self,
        config: dict,
        env: dict[str, str] | None = None,
        workers: int = 1,
        port: int | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        port = port or free_port()
        # a folder of its own: a master key without database_url puts parley.db next to the config
        self.config_dir = tempfile.mkdtemp(prefix="parley-config-")
        self.config_path = os.path.join(self.config_dir, "config.yaml")
        with open(self.config_path, "w") as f:
            yaml.safe_dump(config, f)
        argv = [
            sys.executable,
            "-m",
            "parley",
            "serve",
            "--config",
            self.config_path,
            "--port",
            str(port),
            "--workers",
            str(workers),
            *(extra_args or []),
        ]
        super().__init__(argv, port, "/health/liveness", env=env)

    def stop(self, timeout: float = 15.0) -> int | None:
        code = super().stop(timeout)
        shutil.rmtree(self.config_dir, ignore_errors=True)
        return code


class RedisServer:
    """A private `redis-server` on `port` (no persistence), for tests that stop, pause or kill it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def kill(self) -> None:
        """kill -9; a new `RedisServer(port)` starts it again, empty."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            self.proc.wait(10)


def anthropic_deployment(name: str, upstream: FakeUpstream, model: str | None = None, **params: Any) -> dict:
    """A model_list entry pointing `name` at the fake upstream's Anthropic API."""
    return {
        "model_name": name,
        "params": {
            "model": f"anthropic/{model or name}",
            "api_base": upstream.url,
            "api_key": "sk-ant-upstream-real",
            **params,
        },
    }


# What parley assumes of api.openai.com; a fake at another address standing in for it says so.
OPENAI_SERVICE = {
    "max_tokens_field": "max_completion_tokens",
    "supports_pdf": True,
    "max_stop_sequences": 4,
    "supports_top_k": False,
}


def openai_deployment(name: str, upstream: FakeUpstream, model: str | None = None, **params: Any) -> dict:
    """A model_list entry pointing `name` at the fake upstream's OpenAI API, standing in for
    api.openai.com (OpenAI's switches set, as they are for that address)."""
    return {
        "model_name": name,
        "params": {
            "model": f"openai/{model or name}",
            "api_base": upstream.url + "/v1",
            "api_key": "sk-openai-upstream-real",
            **OPENAI_SERVICE,
            **params,
        },
    }
