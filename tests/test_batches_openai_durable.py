"""OpenAI batches survive their gateway: kill -9 mid-batch and restart (SQLite), and one batch
shared by two instances on one Postgres (each item runs once, the output file is written once
although both runners see the batch end). Real processes, the official openai SDK."""

from __future__ import annotations

import asyncio
import json
import time

import openai

from batches_support import batch_config, item_states, line, read_lines, upload, upstream_counts, wait_done
from keys_support import MASTER, Admin, create_pg_database, drop_pg_database
from parley.testing.procs import Gateway


def _output_files(url: str, batch_id: str) -> list[tuple[str, str]]:
    async def read() -> list[tuple[str, str]]:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            query = "SELECT filename, owner FROM parley_files WHERE filename LIKE $1 ORDER BY filename"
            return [(r[0], r[1]) for r in await conn.fetch(query, batch_id + "_%")]
        finally:
            await conn.close()

    return asyncio.run(read())


def test_two_instances_run_each_item_once_and_write_the_files_once(upstream, b):
    n = 40
    name, url = create_pg_database()
    gateways = []
    try:
        for fake in (upstream, b):
            fake.script(*({"delay": 0.1} for _ in range(n)))
            gateways.append(Gateway(batch_config(fake, url, deployment_concurrency=2, lease_seconds=5)))
        one, two = (openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER, max_retries=0) for gw in gateways)
        models = ("gpt-4o-mini", "claude-haiku-4-5")
        lines = [line(f"r-{i}", models[i % 2], f"question {i}") for i in range(n)]
        batch = one.batches.create(
            input_file_id=upload(one, lines), endpoint="/v1/chat/completions", completion_window="24h"
        )
        done = wait_done(two, batch.id, timeout=90)
        assert done.status == "completed" and done.request_counts.completed == n
        output = read_lines(two, done.output_file_id)
        assert sorted(output) == sorted(f"r-{i}" for i in range(n))
        assert done.error_file_id is None
        rows = [r for r in Admin(gateways[1].url).wait_logs(n) if r["route"] == "/v1/batches"]
        assert sorted(r["request_id"] for r in rows) == sorted(f"{batch.id}_{i}" for i in range(n))
        assert _output_files(url, batch.id) == [(f"{batch.id}_output.jsonl", "master")]
    finally:
        for gw in gateways:
            gw.stop()
        drop_pg_database(name)
    seen_a, seen_b = upstream_counts(upstream), upstream_counts(b)
    assert seen_a and seen_b, "one instance did all the work"
    assert sorted([*seen_a, *seen_b]) == sorted(f"question {i}" for i in range(n))
    assert set(seen_a.values()) == set(seen_b.values()) == {1}


def test_kill_9_mid_batch_then_restart_completes_with_one_line_and_one_row_per_item(upstream, tmp_path):
    n = 36
    db = str(tmp_path / "parley.db")
    config = batch_config(upstream, db, deployment_concurrency=3, lease_seconds=1.5)
    upstream.script(*({"delay": 0.25} for _ in range(n)))
    first = Gateway(config)
    try:
        client = openai.OpenAI(base_url=first.url + "/v1", api_key=MASTER, max_retries=0)
        lines = [
            line(f"k-{i}", ("gpt-4o-mini", "claude-haiku-4-5")[i % 2], f"question {i}") for i in range(n)
        ]
        batch = client.batches.create(
            input_file_id=upload(client, lines), endpoint="/v1/chat/completions", completion_window="24h"
        )
        deadline = time.monotonic() + 30
        while sum(s == "succeeded" for s in item_states(db, batch.id).values()) < 8:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        first.kill()
    done_before = {i for i, s in item_states(db, batch.id).items() if s == "succeeded"}
    assert 8 <= len(done_before) < n, "the kill came too late to test anything"

    second = Gateway(config)
    try:
        client = openai.OpenAI(base_url=second.url + "/v1", api_key=MASTER, max_retries=0)
        done = wait_done(client, batch.id, timeout=90)
        assert done.status == "completed" and done.request_counts.completed == n
        text = client.files.content(done.output_file_id).text
        assert sorted(json.loads(x)["custom_id"] for x in text.splitlines()) == sorted(
            f"k-{i}" for i in range(n)
        )
        time.sleep(0.5)  # any second (wrong) spend row would have been flushed by now
        rows = [r for r in Admin(second.url).wait_logs(n) if r["route"] == "/v1/batches"]
        assert sorted(r["request_id"] for r in rows) == sorted(f"{batch.id}_{i}" for i in range(n))
    finally:
        second.stop()
    counts = upstream_counts(upstream)
    for i in done_before:  # finished before the kill: never sent again
        assert counts[f"question {i}"] == 1
