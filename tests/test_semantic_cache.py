"""The semantic cache: a paraphrase of a cached question is a hit, another question or another key
is a miss, a streamed hit passes the SDK's accumulator, hits cost $0, and `redis-semantic` shares
entries between two gateway processes."""

from __future__ import annotations

import contextlib
import sqlite3
import time
import uuid

import anthropic
import pytest

from keys_support import MASTER, Admin
from parley.testing.procs import anthropic_deployment

MODEL = "claude-sonnet-4-5"


def _config(upstream, tmp, **params) -> dict:
    database = str(tmp / "parley.db") if tmp is not None else None
    return {
        "model_list": [anthropic_deployment(MODEL, upstream, model="claude-sonnet-4-5-20250929")],
        "general_settings": {
            "master_key": MASTER,
            "database_url": database,
            "spend_flush_interval": 0.05,
        },
        "litellm_settings": {
            "cache": True,
            "cache_params": {"type": "semantic", "semantic_default": True, **params},
        },
    }


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("sem")


@pytest.fixture(scope="module")
def gateway(start_gateway, fake_upstream, folder):
    return start_gateway(_config(fake_upstream, folder))


def entries(folder) -> int:
    """Cache rows in the gateway's SQLite database (entries are stored after the reply is sent)."""
    with contextlib.closing(sqlite3.connect(folder / "parley.db")) as db:
        return db.execute("SELECT count(*) FROM parley_cache").fetchone()[0]


def stored(folder, before: int) -> None:
    deadline = time.monotonic() + 10
    while entries(folder) <= before:
        assert time.monotonic() < deadline, "the reply was not stored in the cache"
        time.sleep(0.05)


def ask(gw, key: str, text: str, **kw):
    client = anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)
    return client.messages.with_raw_response.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": text}], **kw
    )


def test_a_paraphrase_hits_and_another_question_or_key_misses(gateway, upstream, folder):
    admin = Admin(gateway.url)
    key, other = (admin.post("/key/generate", {})["key"] for _ in range(2))
    system = f"session {uuid.uuid4()}"  # a fresh bucket for this test
    before = entries(folder)
    first = ask(gateway, key, "What's the capital of France?", system=system)
    assert first.headers["x-parley-cache"] == "miss"
    stored(folder, before)
    paraphrase = ask(gateway, key, "capital city of France?", system=system)
    assert paraphrase.headers["x-parley-cache"] == "hit"
    assert float(paraphrase.headers["x-parley-cache-similarity"]) >= 0.8
    assert float(paraphrase.headers["x-parley-cache-saved-usd"]) > 0
    assert paraphrase.parse().content[0].text == first.parse().content[0].text
    assert len(upstream.requests()) == 1
    assert ask(gateway, key, "What's 1+1?", system=system).headers["x-parley-cache"] == "miss"
    assert (
        ask(gateway, other, "What's the capital of France?", system=system).headers["x-parley-cache"]
        == "miss"
    )
    assert ask(gateway, key, "capital city of France?", system="other").headers["x-parley-cache"] == "miss"
    assert len(upstream.requests()) == 4
    rows = admin.wait_logs(5, api_key=key)
    hits = [r for r in rows if r["cache_hit"]]
    assert len(hits) == 1 and hits[0]["spend"] == 0 and hits[0]["status"] == 200


def test_a_streamed_hit_passes_the_sdk_accumulator(gateway, upstream, folder):
    system = f"stream {uuid.uuid4()}"
    before = entries(folder)
    first = ask(gateway, MASTER, "Name the largest planet in the solar system", system=system).parse()
    stored(folder, before)
    client = anthropic.Anthropic(base_url=gateway.url, api_key=MASTER, max_retries=0)
    with client.messages.stream(
        model=MODEL,
        max_tokens=64,
        system=system,
        messages=[{"role": "user", "content": "name the largest planet of the solar system"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == first.content[0].text == final.content[0].text
    assert final.stop_reason == first.stop_reason
    assert len(upstream.requests()) == 1


def test_tool_results_and_no_cache_are_never_looked_up(gateway, upstream):
    system = f"tools {uuid.uuid4()}"
    ask(gateway, MASTER, "What's the weather in Paris?", system=system)
    again = ask(
        gateway,
        MASTER,
        "What's the weather in Paris?",
        system=system,
        extra_headers={"cache-control": "no-cache"},
    )
    assert again.headers["x-parley-cache"] == "miss"
    client = anthropic.Anthropic(base_url=gateway.url, api_key=MASTER, max_retries=0)
    turns = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]},
    ]
    tools = [{"name": "w", "input_schema": {"type": "object"}}]
    for _ in range(2):
        reply = client.messages.with_raw_response.create(
            model=MODEL, max_tokens=16, system=system, tools=tools, messages=turns
        )
        assert "x-parley-cache" not in reply.headers
    assert len(upstream.requests()) == 4


@pytest.mark.process
def test_redis_semantic_is_shared_between_gateways(start_gateway, fake_upstream, upstream, tmp_path):
    params = {
        "type": "redis-semantic",
        "url": "redis://127.0.0.1:6379/0",
        "namespace": f"sem-{uuid.uuid4().hex[:8]}",
    }
    params["semantic_scope"] = "global"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = start_gateway(_config(fake_upstream, tmp_path / "a", **params))
    two = start_gateway(_config(fake_upstream, tmp_path / "b", **params))
    assert ask(one, MASTER, "How many legs does a spider have?").headers["x-parley-cache"] == "miss"
    for _ in range(50):  # the entry is stored in the background after the reply
        reply = ask(two, MASTER, "how many legs has a spider?")
        if reply.headers["x-parley-cache"] == "hit":
            break
    assert reply.headers["x-parley-cache"] == "hit"


def test_without_semantic_default_only_opted_in_keys_and_models_use_it(
    start_gateway, fake_upstream, upstream, tmp_path
):
    config = _config(fake_upstream, tmp_path)
    del config["litellm_settings"]["cache_params"]["semantic_default"]
    opted = anthropic_deployment("opted-model", fake_upstream, semantic_cache=True)
    config["model_list"].append(opted)
    gw = start_gateway(config)
    admin = Admin(gw.url)
    plain, keen = (
        admin.post("/key/generate", {})["key"],
        admin.post("/key/generate", {"metadata": {"semantic_cache": True}})["key"],
    )
    for _ in range(2):
        assert "x-parley-cache" not in ask(gw, plain, "What's the capital of Peru?").headers
    assert ask(gw, keen, "What's the capital of Peru?").headers["x-parley-cache"] == "miss"
    stored(tmp_path, 0)
    assert ask(gw, keen, "capital city of Peru?").headers["x-parley-cache"] == "hit"
    client = anthropic.Anthropic(base_url=gw.url, api_key=plain, max_retries=0)
    for expected in ("miss", "hit"):
        reply = client.messages.with_raw_response.create(
            model="opted-model", max_tokens=16, messages=[{"role": "user", "content": "Name a blue fruit"}]
        )
        assert reply.headers["x-parley-cache"] == expected
        if expected == "miss":
            stored(tmp_path, 1)


@pytest.mark.process
def test_semantic_entries_are_shared_through_the_database(start_gateway, fake_upstream, upstream):
    from keys_support import create_pg_database, drop_pg_database

    name, url = create_pg_database()
    try:
        config = _config(fake_upstream, None, semantic_scope="global")
        config["general_settings"]["database_url"] = url
        one, two = start_gateway(config), start_gateway(config)
        assert ask(one, MASTER, "How many moons does Mars have?").headers["x-parley-cache"] == "miss"
        for _ in range(50):  # stored in the background after the reply
            reply = ask(two, MASTER, "how many moons has Mars got?")
            if reply.headers["x-parley-cache"] == "hit":
                break
        assert reply.headers["x-parley-cache"] == "hit"
        assert len(upstream.requests()) < 50
        one.stop()
        two.stop()
    finally:
        drop_pg_database(name)
