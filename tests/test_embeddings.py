"""`/v1/embeddings` through the official openai SDK: the built-in local model (offline) and an
OpenAI-compatible deployment (the fake upstream), billed and logged like any call."""

from __future__ import annotations

import numpy as np
import openai
import orjson
import pytest

from keys_support import MASTER, Admin
from parley.testing.procs import openai_deployment


@pytest.fixture(scope="module")
def gateway(start_inprocess_module, fake_upstream, tmp_path_factory):
    db = str(tmp_path_factory.mktemp("emb") / "parley.db")
    return start_inprocess_module(
        {
            "model_list": [
                {"model_name": "parley-embed", "params": {"model": "local/parley-embed"}},
                openai_deployment("text-embedding-3-small", fake_upstream),
                openai_deployment("chatty", fake_upstream),
            ],
            "general_settings": {"master_key": MASTER, "database_url": db, "spend_flush_interval": 0.05},
        }
    )


def _client(gateway, key: str = MASTER) -> openai.OpenAI:
    return gateway.openai(api_key=key, max_retries=0)


def _cos(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_the_local_model_embeds_offline_and_ranks_by_meaning(gateway):
    texts = ["What's the capital of France?", "capital city of France?", "What's 1+1?"]
    reply = _client(gateway).embeddings.create(model="parley-embed", input=texts)  # SDK asks for base64
    vectors = [d.embedding for d in reply.data]
    assert [d.index for d in reply.data] == [0, 1, 2] and len(vectors[0]) == 256
    assert _cos(vectors[0], vectors[1]) > 0.7 > 0.3 > _cos(vectors[0], vectors[2])
    assert reply.usage.prompt_tokens > 6 and reply.model == "parley-embed"
    floats = _client(gateway).embeddings.create(model="parley-embed", input=texts[0], encoding_format="float")
    assert np.allclose(floats.data[0].embedding, vectors[0], atol=1e-6)
    short = _client(gateway).embeddings.create(model="parley-embed", input="hello", dimensions=64)
    assert len(short.data[0].embedding) == 64
    assert abs(np.linalg.norm(short.data[0].embedding) - 1) < 1e-5


def test_bad_input_gets_openai_errors(gateway):
    client = _client(gateway)
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        client.embeddings.create(model="parley-embed", input="x", dimensions=100)
    with pytest.raises(openai.BadRequestError, match="token ids"):
        client.embeddings.create(model="parley-embed", input=[[1, 2, 3]])
    with pytest.raises(openai.BadRequestError, match="input"):
        client.embeddings.create(model="parley-embed", input=[])
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")
    with pytest.raises(openai.BadRequestError, match="embedding model"):
        client.chat.completions.create(model="parley-embed", messages=[{"role": "user", "content": "hi"}])
    reply = gateway.http.post("/v1/embeddings", content=b"{", headers={"authorization": f"Bearer {MASTER}"})
    assert reply.status_code == 400 and reply.json()["error"]["type"] == "invalid_request_error"


def test_an_openai_compatible_deployment_gets_the_request(gateway, upstream):
    reply = _client(gateway).embeddings.create(model="text-embedding-3-small", input=["a b c", "d e"])
    assert len(reply.data) == 2 and reply.usage.prompt_tokens == 5
    sent = upstream.requests()[0]
    assert sent["path"] == "/v1/embeddings"
    assert orjson.loads(sent["body"])["model"] == "text-embedding-3-small"
    assert sent["headers"]["authorization"] == "Bearer sk-openai-upstream-real"


def test_embeddings_are_billed_and_logged(gateway, upstream):
    admin = Admin.of(gateway)
    key = admin.post("/key/generate", {})["key"]
    _client(gateway, key).embeddings.create(model="parley-embed", input="local is free")
    _client(gateway, key).embeddings.create(model="text-embedding-3-small", input=["one two three four"])
    rows = admin.wait_logs(2, api_key=key)
    by_model = {r["model"]: r for r in rows}
    assert by_model["parley-embed"]["spend"] == 0 and by_model["parley-embed"]["prompt_tokens"] > 0
    assert by_model["text-embedding-3-small"]["spend"] == pytest.approx(4 * 0.02 / 1e6)
    assert all(r["route"] == "/v1/embeddings" and r["status"] == 200 for r in rows)
