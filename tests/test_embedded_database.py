"""A master key without database_url: keys and spend in parley.db next to the config, said in the
banner; `database_url: none` keeps keys off; DATABASE_URL still wins over the default."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

import anthropic

from keys_support import Admin
from parley.testing.procs import ServerProcess, free_port

MASTER = "sk-embedded-master"
CLEAN_ENV = {
    k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PARLEY_MASTER_KEY", "REDIS_URL")
}


def serve(folder, text: str, env: dict[str, str] | None = None) -> ServerProcess:
    path = folder / "gateway.yaml"
    path.write_text("model_list: [{model_name: m, params: {model: mock/m}}]\n" + text)
    port = free_port()
    argv = [sys.executable, "-m", "parley", "--config", str(path), "--port", str(port)]
    return ServerProcess(argv, port, "/health/readiness", env={**CLEAN_ENV, **(env or {})})


def test_master_key_alone_hands_out_virtual_keys(tmp_path):
    gw = serve(tmp_path, f"general_settings: {{master_key: {MASTER}}}\n")
    try:
        key = Admin(gw.url, MASTER).post("/key/generate", {"key_alias": "first"})["key"]
        client = anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)
        assert client.messages.create(
            model="m", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        ).content
    finally:
        gw.stop()
    db = tmp_path / "parley.db"
    assert db.exists() and oct(db.stat().st_mode & 0o777) == "0o600"
    assert f"database:   SQLite file {db} (embedded: master_key without database_url" in gw.log()


def test_database_url_none_keeps_keys_off(tmp_path):
    gw = serve(tmp_path, f"general_settings: {{master_key: {MASTER}, database_url: none}}\n")
    try:
        request = urllib.request.Request(
            gw.url + "/key/generate", data=b"{}", method="POST", headers={"x-api-key": MASTER}
        )
        try:
            urllib.request.urlopen(request, timeout=10)
            status = 200
        except urllib.error.HTTPError as e:
            status = e.code
        assert status == 404
    finally:
        gw.stop()
    assert not (tmp_path / "parley.db").exists()
    assert "database:   none (keys and spend tracking off" in gw.log()


def test_database_url_from_the_environment_wins(tmp_path):
    elsewhere = tmp_path / "elsewhere.db"
    gw = serve(
        tmp_path,
        f"general_settings: {{master_key: {MASTER}}}\n",
        env={"DATABASE_URL": f"sqlite:///{elsewhere}"},
    )
    gw.stop()
    assert elsewhere.exists() and not (tmp_path / "parley.db").exists()
