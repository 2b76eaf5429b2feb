"""OpenAI batch items under the key's policies, as Messages batch items: the budget reserved per
item (the rest land in the error file with the budget error), the discount, expiry. Real `parley
serve`, the official openai SDK."""

from __future__ import annotations

import openai
import pytest

from batches_support import (
    IN,
    OUT,
    batch_config,
    line,
    priced_config,
    read_lines,
    upload,
    upstream_counts,
    wait_done,
)
from keys_support import MASTER, Admin


@pytest.fixture(scope="module")
def gateway(start_gateway, fake_upstream, tmp_path_factory):
    db = str(tmp_path_factory.mktemp("obatch-policies") / "parley.db")
    return start_gateway(priced_config(fake_upstream, db, deployment_concurrency=1, discount=0.25))


def _create(client: openai.OpenAI, lines: list) -> openai.types.Batch:
    return client.batches.create(
        input_file_id=upload(client, lines), endpoint="/v1/chat/completions", completion_window="24h"
    )


def test_budget_covers_some_items_and_the_rest_get_the_budget_error(gateway, upstream):
    admin = Admin(gateway.url)
    budget = 0.003
    key = admin.post("/key/generate", {"max_budget": budget})["key"]
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    n = 30
    lines = [line(f"b-{i}", "priced", f"question {i}", max_tokens=100) for i in range(n)]
    done = wait_done(client, _create(client, lines).id)
    counts = done.request_counts
    assert done.status == "completed" and 1 <= counts.completed < n and counts.failed == n - counts.completed
    errors = read_lines(client, done.error_file_id)
    assert len(errors) == counts.failed and len(read_lines(client, done.output_file_id)) == counts.completed
    for row in errors.values():
        assert row["response"]["status_code"] == 402
        assert row["response"]["body"]["error"]["type"] == "insufficient_quota"
        assert "budget exceeded" in row["response"]["body"]["error"]["message"]
    assert len(upstream_counts(upstream)) == counts.completed  # refused items never went upstream
    rows = [r for r in admin.wait_logs(n, api_key=key) if r["route"] == "/v1/batches"]
    assert len(rows) == n  # one row per item, refused ones included
    assert sum(r["spend"] for r in rows) <= budget + 1e-12
    assert sorted(r["status"] for r in rows) == [200] * counts.completed + [402] * counts.failed


def test_items_are_billed_at_the_configured_discount(gateway, upstream):
    admin = Admin(gateway.url)
    key = admin.post("/key/generate", {})["key"]
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    upstream.script({"usage": {"input_tokens": 1000, "output_tokens": 500}})
    done = wait_done(client, _create(client, [line("one", "priced", "question 1")]).id)
    [row] = read_lines(client, done.output_file_id).values()
    assert row["response"]["body"]["usage"]["prompt_tokens"] == 1000
    [spend] = admin.wait_logs(1, api_key=key)
    assert spend["spend"] == pytest.approx((1000 * IN + 500 * OUT) * 0.75)


def test_batches_expire_and_waiting_items_go_to_the_error_file(start_gateway, upstream, tmp_path):
    config = batch_config(
        upstream, str(tmp_path / "parley.db"), deployment_concurrency=1, expiry_hours=1.5 / 3600
    )
    client = openai.OpenAI(base_url=start_gateway(config).url + "/v1", api_key=MASTER, max_retries=0)
    upstream.script(*({"delay": 0.4} for _ in range(20)))
    batch = _create(client, [line(f"e-{i}", "claude-haiku-4-5", f"question {i}") for i in range(20)])
    assert batch.expires_at - batch.created_at in (1, 2)
    done = wait_done(client, batch.id)
    assert done.status == "expired" and done.expired_at is not None
    finished = read_lines(client, done.output_file_id)
    expired = read_lines(client, done.error_file_id)
    assert len(finished) >= 1 and len(expired) >= 10 and len(finished) + len(expired) == 20
    assert {r["error"]["code"] for r in expired.values()} == {"batch_expired"}
    assert len(upstream_counts(upstream)) == len(finished)
