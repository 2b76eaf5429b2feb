"""Helpers for the Message Batches tests: gateway configs over three backends, and polling."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from typing import Any

import anthropic
import openai

from keys_support import MASTER
from parley.testing.procs import anthropic_deployment, openai_deployment

MODELS = ("claude-haiku-4-5", "gpt-4o-mini", "parley-mock")  # native Anthropic, OpenAI-compatible, mock


def batch_config(upstream: Any, database_url: str, **batch: Any) -> dict:
    return {
        "model_list": [
            anthropic_deployment("claude-haiku-4-5", upstream),
            openai_deployment("gpt-4o-mini", upstream),
            {"model_name": "parley-mock", "params": {"model": "mock/parley-mock"}},
        ],
        "general_settings": {"master_key": MASTER, "database_url": database_url, "spend_flush_interval": 0.1},
        "batch_settings": {"poll_interval": 0.1, **batch},
    }


IN, OUT = 0.00001, 0.00002  # the priced deployment's $ per token


def priced_config(upstream, db: str, **batch) -> dict:
    config = batch_config(upstream, db, **batch)
    config["model_list"].append(
        anthropic_deployment(
            "priced", upstream, model="custom-model", input_cost_per_token=IN, output_cost_per_token=OUT
        )
    )
    return config


def requests_for(n: int, models: tuple[str, ...] = MODELS, max_tokens: int = 64) -> list[dict]:
    return [
        {
            "custom_id": f"item-{i}",
            "params": {
                "model": models[i % len(models)],
                "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": f"question {i}"}],
            },
        }
        for i in range(n)
    ]


def wait_ended(client: anthropic.Anthropic, batch_id: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.processing_status} after {timeout}s"
        time.sleep(0.1)


def item_states(database_url: str, batch_id: str) -> dict[int, str]:
    """Each item's state, read straight from the database (a SQLite path or a Postgres URL)."""
    query = "SELECT idx, state FROM parley_batch_items WHERE batch_id = "
    if not database_url.startswith("postgresql://"):
        with sqlite3.connect(database_url, timeout=10) as conn:
            return dict(conn.execute(query + "?", (batch_id,)).fetchall())

    async def read() -> dict[int, str]:
        import asyncpg

        conn = await asyncpg.connect(database_url)
        try:
            return {r[0]: r[1] for r in await conn.fetch(query + "$1", batch_id)}
        finally:
            await conn.close()

    return asyncio.run(read())


def upstream_counts(upstream: Any) -> dict[str, int]:
    """How many times the fake upstream was asked each `question N` (both protocols)."""
    counts: dict[str, int] = {}
    for seen in upstream.requests():
        body = seen["body"]
        start = body.find("question ")
        if start >= 0:
            end = start + len("question ")
            while end < len(body) and body[end].isdigit():
                end += 1
            counts[body[start:end]] = counts.get(body[start:end], 0) + 1
    return counts


# OpenAI batches (`/v1/batches`) -------------------------------------------------------------
def line(custom_id: str, model: str, text: str, max_tokens: int = 32) -> dict:
    """One line of a batch input file: a chat completion request."""
    body = {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}]}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def upload(client: openai.OpenAI, lines: list) -> str:
    data = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines).encode()
    return client.files.create(file=("input.jsonl", data), purpose="batch").id


def wait_done(client: openai.OpenAI, batch_id: str, timeout: float = 60.0) -> openai.types.Batch:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.status} after {timeout}s"
        time.sleep(0.1)


def read_lines(client: openai.OpenAI, file_id: str) -> dict[str, dict]:
    text = client.files.content(file_id).text
    rows = [json.loads(x) for x in text.splitlines()]
    return {r["custom_id"]: r for r in rows}
