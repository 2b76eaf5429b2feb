"""Retrieval, offline: three documents ingested for team A through the openai SDK's vector-store
calls; team A's key asks the anthropic SDK for the launch code and the upstream receives the chunk
as a `search_result`; team B cannot see or use team A's store; OpenAI backends get numbered sources."""

from __future__ import annotations

import io
import time

import anthropic
import openai
import orjson
import pytest

from keys_support import MASTER, Admin, create_pg_database, drop_pg_database
from parley.testing.procs import anthropic_deployment, openai_deployment

DOCS = {
    "launch.md": "# Operations\n\nThe launch code is 7421. Keep it in the blue safe on level two.",
    "lunch.md": "# Canteen\n\nLunch is served from noon to two. Fridays have fish and chips.",
    "garden.txt": "The garden team waters the tomatoes every morning and the roses every evening.",
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def db(request, tmp_path_factory):
    if request.param == "sqlite":
        yield str(tmp_path_factory.mktemp("rag") / "parley.db")
        return
    name, url = create_pg_database()
    yield url
    drop_pg_database(name)


def _config(db: str, *entries: dict) -> dict:
    general = {"master_key": MASTER, "database_url": db, "spend_flush_interval": 0.05}
    return {"model_list": list(entries), "general_settings": general}


@pytest.fixture(scope="module")
def gateway(start_inprocess_module, fake_upstream, db):
    return start_inprocess_module(
        _config(
            db,
            anthropic_deployment("claude-sonnet-4-5", fake_upstream, model="claude-sonnet-4-5-20250929"),
            openai_deployment("gpt-local", fake_upstream),
        )
    )


@pytest.fixture(scope="module")
def teams(gateway):
    admin = Admin.of(gateway)
    keys = {}
    for team in ("team-a", "team-b"):
        admin.post("/team/new", {"team_id": team})
        keys[team] = admin.post("/key/generate", {"team_id": team})["key"]
    return keys


@pytest.fixture(scope="module")
def store(gateway, teams):
    client = gateway.openai(api_key=teams["team-a"], max_retries=0)
    ids = [
        client.files.create(file=(name, io.BytesIO(text.encode())), purpose="assistants").id
        for name, text in DOCS.items()
    ]
    vs = client.vector_stores.create(name="ops", file_ids=ids)
    deadline = time.monotonic() + 30
    while client.vector_stores.retrieve(vs.id).file_counts.completed < 3:
        assert time.monotonic() < deadline, client.vector_stores.retrieve(vs.id)
        time.sleep(0.1)
    return vs.id


def test_the_owner_searches_the_store_and_others_cannot_see_it(gateway, teams, store):
    a = gateway.openai(api_key=teams["team-a"], max_retries=0)
    page = a.vector_stores.search(store, query="what is the launch code?")
    assert "7421" in page.data[0].content[0].text and page.data[0].filename == "launch.md"
    assert page.data[0].score > page.data[-1].score
    assert a.vector_stores.retrieve(store).file_counts.total == 3
    assert [f.status for f in a.vector_stores.files.list(store)] == ["completed"] * 3
    b = gateway.openai(api_key=teams["team-b"], max_retries=0)
    with pytest.raises(openai.NotFoundError):
        b.vector_stores.retrieve(store)
    with pytest.raises(openai.NotFoundError):
        b.vector_stores.search(store, query="launch code")
    assert store not in [s.id for s in b.vector_stores.list()]
    assert store in [s.id for s in a.vector_stores.list()]


def test_retrieved_chunks_reach_claude_as_search_results(gateway, teams, store, upstream):
    client = gateway.anthropic(api_key=teams["team-a"], max_retries=0)
    reply = client.messages.with_raw_response.create(
        model="claude-sonnet-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "what is the launch code?"}],
        extra_body={"litellm_metadata": {"vector_store_ids": [store]}},
    )
    assert reply.headers["x-parley-retrieval"].startswith(f"store={store}; chunks=")
    assert "7421" in reply.parse().content[0].text  # the fake echoes what it was sent
    sent = orjson.loads(upstream.requests()[0]["body"])
    blocks = sent["messages"][-1]["content"]
    results = [b for b in blocks if b["type"] == "search_result"]
    assert results and "7421" in results[0]["content"][0]["text"] and results[0]["title"] == "launch.md"
    assert results[0]["citations"] == {"enabled": True}
    assert blocks[-1] == {"type": "text", "text": "what is the launch code?"}
    assert "litellm_metadata" not in sent
    rows = Admin.of(gateway).wait_logs(1, api_key=teams["team-a"], model="claude-sonnet-4-5")
    assert rows[0]["retrieval"] == {"stores": [store], "chunks": len(results)}


def test_another_team_cannot_retrieve_from_the_store(gateway, teams, store, upstream):
    client = gateway.anthropic(api_key=teams["team-b"], max_retries=0)
    with pytest.raises(anthropic.NotFoundError, match=store):
        client.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=16,
            messages=[{"role": "user", "content": "what is the launch code?"}],
            extra_body={"litellm_metadata": {"vector_store_ids": [store]}},
        )
    plain = client.messages.with_raw_response.create(
        model="claude-sonnet-4-5",
        max_tokens=16,
        messages=[{"role": "user", "content": "what is the launch code?"}],
    )
    assert "x-parley-retrieval" not in plain.headers and "7421" not in plain.parse().content[0].text
    assert len(upstream.requests()) == 1


def test_openai_backends_get_numbered_sources(gateway, teams, store, upstream):
    client = gateway.openai(api_key=teams["team-a"], max_retries=0)
    reply = client.chat.completions.create(
        model="gpt-local",
        messages=[{"role": "user", "content": "what is the launch code?"}],
        extra_body={"litellm_metadata": {"vector_store_ids": [store]}},
    )
    assert "7421" in reply.choices[0].message.content
    sent = orjson.loads(upstream.requests()[0]["body"])
    parts = sent["messages"][-1]["content"]
    assert parts[0]["type"] == "text" and parts[0]["text"].startswith("Sources retrieved")
    assert "[1] launch.md" in parts[0]["text"] and parts[-1]["text"] == "what is the launch code?"


def test_a_deployment_can_name_its_stores(start_inprocess, fake_upstream, db, store, upstream):
    entry = anthropic_deployment("ops-bot", fake_upstream, model="claude-sonnet-4-5-20250929")
    entry["params"]["vector_store_ids"] = [store]
    bot = start_inprocess(_config(db, entry))
    reply = bot.anthropic(api_key=MASTER, max_retries=0).messages.create(
        model="ops-bot", max_tokens=64, messages=[{"role": "user", "content": "launch code please"}]
    )
    assert "7421" in reply.content[0].text


@pytest.mark.process
def test_parley_ingest_uploads_with_progress_and_reports_failures(start_gateway, fake_upstream, db, tmp_path):
    import subprocess
    import sys

    gw = start_gateway(_config(db, anthropic_deployment("claude-sonnet-4-5", fake_upstream)))
    good = tmp_path / "manual.md"
    good.write_text("Section one.\n" + "The reactor manual says to vent the coolant slowly. " * 400)
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    cli = [sys.executable, "-m", "parley", "ingest", "--url", gw.url, "--key", MASTER, "--name", "manuals"]
    done = subprocess.run([*cli, str(good)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    store = done.stdout.strip()
    assert store.startswith("vs_") and "chunks, 1/1 files" in done.stderr
    found = gw_search(gw, store, "how should the coolant be vented?")
    assert "vent the coolant" in found["data"][0]["content"][0]["text"]
    failed = subprocess.run([*cli, str(good), str(bad)], capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "photo.jpg" in failed.stderr and "UTF-8" in failed.stderr


def gw_search(gw, store: str, query: str) -> dict:
    import urllib.request

    request = urllib.request.Request(
        f"{gw.url}/v1/vector_stores/{store}/search",
        data=orjson.dumps({"query": query}),
        headers={"authorization": f"Bearer {MASTER}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return orjson.loads(reply.read())


def test_pii_in_retrieved_documents_is_masked_before_it_is_sent(start_inprocess, fake_upstream, db, upstream):
    config = _config(
        db, anthropic_deployment("claude-sonnet-4-5", fake_upstream, model="claude-sonnet-4-5-20250929")
    )
    config["guardrails"] = [
        {
            "guardrail_name": "pii",
            "litellm_params": {"guardrail": "parley_pii", "mode": "pre_call", "default_on": True},
        }
    ]
    gw = start_inprocess(config)
    client = gw.openai(api_key=MASTER, max_retries=0)
    doc = "The on-call escalation contact is dana.wells@example.com, reachable day and night."
    file_id = client.files.create(file=("oncall.md", io.BytesIO(doc.encode())), purpose="assistants").id
    store = client.vector_stores.create(name="oncall", file_ids=[file_id]).id
    deadline = time.monotonic() + 30
    while client.vector_stores.retrieve(store).file_counts.completed < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    gw.anthropic(api_key=MASTER, max_retries=0).messages.create(
        model="claude-sonnet-4-5",
        max_tokens=32,
        messages=[{"role": "user", "content": "who is the escalation contact?"}],
        extra_body={"litellm_metadata": {"vector_store_ids": [store]}},
    )
    sent = upstream.requests()[0]["body"]
    assert "search_result" in sent and "escalation contact" in sent
    assert "dana.wells@example.com" not in sent
