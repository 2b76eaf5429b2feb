"""A worker imports what its config uses. numpy (the embedding model, vector search), redis-py and
Alembic (a database already at the newest revision) stay out of a gateway that does not need them:
each would cost a worker 7-11 MB of resident memory for its whole life (docs/performance.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from parley.store.db import head_revision, script_head

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What uvicorn does in a worker: the app factory, then the lifespan's startup (migrations included).
WORKER = r"""
import asyncio, json, sys
from parley.server.factory import app

async def main():
    served = app()
    queue = asyncio.Queue()
    sent = []
    await queue.put({"type": "lifespan.startup"})

    async def send(message):
        sent.append(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(served(scope, queue.get, send))
    while not sent:
        await asyncio.sleep(0.02)
    loaded = sorted({name.split(".")[0] for name in sys.modules})
    await queue.put({"type": "lifespan.shutdown"})
    await task
    print(json.dumps({"startup": sent[0]["type"], "modules": loaded}))

asyncio.run(main())
"""


def worker_modules(config: dict, tmp_path) -> set[str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = dict(os.environ, PARLEY_CONFIG=str(path), PYTHONPATH=os.path.join(ROOT, "src"))
    env.pop("REDIS_URL", None)
    proc = subprocess.run(
        [sys.executable, "-c", WORKER], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["startup"] == "lifespan.startup.complete", report
    return set(report["modules"])


def bench_config(tmp_path) -> dict:
    """The benchmark's shape: a database (spend logs, keys), the PII guardrail, no Redis, no cache."""
    return {
        "model_list": [
            {
                "model_name": "m",
                "litellm_params": {"model": "anthropic/m", "api_base": "http://127.0.0.1:9", "api_key": "k"},
            }
        ],
        "general_settings": {
            "master_key": "sk-master-0123456789",
            "database_url": f"sqlite+aiosqlite:///{tmp_path}/parley.db",
        },
        "guardrails": [
            {"guardrail_name": "pii", "litellm_params": {"guardrail": "parley_pii", "mode": "pre_call"}}
        ],
    }


def test_a_worker_loads_neither_numpy_nor_redis_nor_alembic_once_the_database_is_migrated(tmp_path):
    config = bench_config(tmp_path)
    first = worker_modules(config, tmp_path)
    assert "alembic" in first  # a new database is migrated with Alembic
    assert {"sqlalchemy", "phonenumbers"} <= first  # what this config does use
    again = worker_modules(config, tmp_path)
    assert "sqlalchemy" in again
    for unused in ("numpy", "redis", "alembic", "mako", "wordllama"):
        assert unused not in again, unused


def test_the_migration_files_name_the_same_head_as_alembic():
    """The check that lets a migrated database skip Alembic reads the files the way Alembic does."""
    assert script_head() == head_revision()
