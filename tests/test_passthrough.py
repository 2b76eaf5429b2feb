"""`/anthropic/*` with the official anthropic SDK: every endpoint, native format, key swapped.
The gateway runs in process; the test that streams uses a `parley serve` process (marked `process`)."""

from __future__ import annotations

import time

import anthropic
import orjson
import pytest

from keys_support import gateway_fixtures
from parley.testing.inprocess import anthropic_client

MASTER = "sk-parley-master-pass"


def gateway_config(fake_upstream):
    return {
        "model_list": [{"model_name": "parley-mock", "params": {"model": "mock/parley-mock"}}],
        "general_settings": {"master_key": MASTER},
        "anthropic_passthrough": {"api_base": fake_upstream.url, "api_key": "sk-ant-real-upstream"},
    }


in_process, served, gateway = gateway_fixtures(gateway_config)


@pytest.fixture
def client(gateway):
    return anthropic_client(gateway, base_url=gateway.url + "/anthropic", api_key=MASTER, max_retries=0)


def assert_upstream_saw_real_key_only(upstream):
    for seen in upstream.requests():
        assert seen["headers"]["x-api-key"] == "sk-ant-real-upstream"
        assert MASTER not in orjson.dumps(seen).decode()


@pytest.mark.process
def test_create_stream_count_tokens_models(client, upstream):
    message = client.messages.create(
        model="claude-sonnet-4-5-20250929", max_tokens=32, messages=[{"role": "user", "content": "native"}]
    )
    assert message.content[0].text == "Hello! You said: native"
    assert message.model == "claude-sonnet-4-5-20250929"
    with client.messages.stream(
        model="claude-sonnet-4-5-20250929", max_tokens=32, messages=[{"role": "user", "content": "streamed"}]
    ) as stream:
        assert "".join(stream.text_stream) == "Hello! You said: streamed"
    tokens = client.messages.count_tokens(
        model="claude-sonnet-4-5-20250929", messages=[{"role": "user", "content": "count me"}]
    )
    assert tokens.input_tokens > 0
    assert [m.id for m in client.models.list()] == ["claude-sonnet-4-5-20250929"]
    paths = [(r["method"], r["path"]) for r in upstream.requests()]
    assert paths == [
        ("POST", "/v1/messages"),
        ("POST", "/v1/messages"),
        ("POST", "/v1/messages/count_tokens"),
        ("GET", "/v1/models"),
    ]
    assert_upstream_saw_real_key_only(upstream)


def test_batches_lifecycle(client, upstream):
    requests = [
        {
            "custom_id": f"r{i}",
            "params": {
                "model": "claude-haiku-4-5",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": f"q{i}"}],
            },
        }
        for i in range(3)
    ]
    batch = client.messages.batches.create(requests=requests)
    assert batch.processing_status == "in_progress"
    assert client.messages.batches.retrieve(batch.id).id == batch.id
    assert batch.id in [b.id for b in client.messages.batches.list()]
    deadline = time.monotonic() + 5
    while client.messages.batches.retrieve(batch.id).processing_status != "ended":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.results_url.startswith(client.base_url.__str__().rstrip("/") + "/v1/messages/batches/")
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert sorted(results) == ["r0", "r1", "r2"]
    assert (
        results["r1"].type == "succeeded" and results["r1"].message.content[0].text == "Hello! You said: q1"
    )
    other = client.messages.batches.create(requests=requests[:1])
    assert client.messages.batches.cancel(other.id).processing_status == "canceling"
    deleted = client.messages.batches.delete(batch.id)
    assert deleted.type == "message_batch_deleted"
    assert_upstream_saw_real_key_only(upstream)


def test_litellm_metadata_is_removed_before_forwarding(client, upstream):
    client.messages.create(
        model="claude-x",
        max_tokens=8,
        messages=[{"role": "user", "content": "m"}],
        extra_body={"litellm_metadata": {"tags": ["team-a"], "user": "alice"}},
    )
    body = upstream.last_body()
    assert "litellm_metadata" not in body and body["model"] == "claude-x"


def test_parley_errors_use_anthropic_envelope_and_upstream_errors_pass(gateway, client, upstream):
    bad = anthropic_client(gateway, base_url=gateway.url + "/anthropic", api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        bad.models.list()
    assert info.value.body["type"] == "error"
    upstream.script({"status": 529, "error": {"type": "overloaded_error", "message": "Overloaded"}})
    with pytest.raises(anthropic.InternalServerError) as info:
        client.messages.create(model="claude-x", max_tokens=8, messages=[{"role": "user", "content": "m"}])
    assert info.value.status_code == 529 and info.value.body["error"]["message"] == "Overloaded"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve("msgbatch_missing")


def test_beta_query_and_headers_forwarded(gateway, client, upstream):
    client.beta.messages.create(
        model="claude-x",
        max_tokens=8,
        betas=["files-api-2025-04-14"],
        messages=[{"role": "user", "content": "beta"}],
    )
    assert "files-api-2025-04-14" in upstream.requests()[-1]["headers"]["anthropic-beta"]
    # anthropic 2.12 no longer appends ?beta=true itself; older clients and Claude Code do
    import urllib.request

    req = urllib.request.Request(
        gateway.url + "/anthropic/v1/models?beta=true&limit=5", headers={"x-api-key": MASTER}
    )
    with gateway.urlopen(req) as r:
        assert r.status == 200
    seen = upstream.requests()[-1]
    assert (seen["path"], seen["query"]) == ("/v1/models", "beta=true&limit=5")


def test_bring_your_own_key_mode(start_inprocess, fake_upstream, upstream):
    byok = start_inprocess(
        {
            "model_list": [{"model_name": "parley-mock", "params": {"model": "mock/parley-mock"}}],
            "general_settings": {"master_key": MASTER},
            "anthropic_passthrough": {"api_base": fake_upstream.url, "forward_client_key": True},
        }
    )
    own = anthropic_client(
        byok,
        base_url=byok.url + "/anthropic",
        api_key="sk-ant-users-own-key",
        default_headers={"x-parley-api-key": MASTER},
        max_retries=0,
    )
    assert (
        own.messages.create(model="claude-x", max_tokens=8, messages=[{"role": "user", "content": "own"}])
        .content[0]
        .text
    )
    seen = upstream.requests()[-1]["headers"]
    credential = seen.get("x-api-key") or seen.get("authorization", "").removeprefix("Bearer ")
    assert credential == "sk-ant-users-own-key" and "x-parley-api-key" not in seen
    no_gateway_key = anthropic_client(
        byok, base_url=byok.url + "/anthropic", api_key="sk-ant-users-own-key", max_retries=0
    )
    with pytest.raises(anthropic.AuthenticationError):
        no_gateway_key.models.list()


def test_files_api(client, upstream):
    payload = bytes(range(256)) * 1000  # binary, 256 KB
    uploaded = client.beta.files.upload(file=("data.bin", payload, "application/octet-stream"))
    assert (uploaded.filename, uploaded.size_bytes) == ("data.bin", len(payload))
    assert uploaded.id in [f.id for f in client.beta.files.list()]
    assert client.beta.files.retrieve_metadata(uploaded.id).size_bytes == len(payload)
    assert client.beta.files.download(uploaded.id).read() == payload
    assert client.beta.files.delete(uploaded.id).type == "file_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.beta.files.retrieve_metadata(uploaded.id)
    assert_upstream_saw_real_key_only(upstream)
    assert upstream.requests()[0]["headers"]["content-type"].startswith("multipart/form-data")
