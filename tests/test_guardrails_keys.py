"""Guardrails attached to keys and teams through the admin API (stored, migration 0003), on SQLite
and Postgres; what they did lands in the spend log row; a failing engine fails closed."""

from __future__ import annotations

import anthropic
import pytest

from keys_support import Admin, database_urls, gateway_config
from parley.testing.inprocess import anthropic_client

GUARDRAILS = [
    {
        "guardrail_name": "pii",
        "litellm_params": {"guardrail": "parley_pii", "pii_entities_config": {"EMAIL_ADDRESS": "MASK"}},
    },
    {
        "guardrail_name": "words",
        "litellm_params": {"guardrail": "content_filter", "blocked_words": ["zebra-protocol"]},
    },
    {
        "guardrail_name": "outwords",
        "litellm_params": {
            "guardrail": "content_filter",
            "mode": ["pre_call", "post_call"],
            "blocked_words": ["zebra-protocol"],
        },
    },
]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database_url(request, tmp_path_factory):
    yield from database_urls(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def gw(start_gateway, fake_upstream, database_url):
    config = gateway_config(fake_upstream, database_url)
    config["guardrails"] = GUARDRAILS
    gw = start_gateway(config)
    yield gw
    gw.stop()


@pytest.fixture
def admin(gw):
    return Admin(gw.url)


def ask(gw, key: str, text: str, **kw):
    client = anthropic_client(gw, api_key=key, max_retries=0)
    return client.messages.create(
        model="claude-haiku-4-5", max_tokens=16, messages=[{"role": "user", "content": text}], **kw
    )


def test_key_guardrails_apply_to_its_requests_only(gw, admin, upstream):
    guarded = admin.post("/key/generate", {"guardrails": ["pii"]})
    assert guarded["guardrails"] == ["pii"]
    plain = admin.post("/key/generate", {})
    ask(gw, guarded["key"], "mail ann@example.com")
    assert "ann@example.com" not in upstream.requests()[-1]["body"]
    ask(gw, plain["key"], "mail ann@example.com")
    assert "ann@example.com" in upstream.requests()[-1]["body"]
    info = admin.get("/key/info", key=guarded["key"])
    assert info["info"]["guardrails"] == ["pii"]


def test_team_guardrails_and_update(gw, admin, upstream):
    admin.post("/team/new", {"team_id": "t-guard", "guardrails": ["words"]})
    key = admin.post("/key/generate", {"team_id": "t-guard"})["key"]
    with pytest.raises(anthropic.BadRequestError) as info:
        ask(gw, key, "the zebra-protocol again")
    assert "blocked_words[0]" in info.value.message
    admin.post("/team/update", {"team_id": "t-guard", "guardrails": []})
    admin.post("/key/update", {"key": key, "guardrails": ["pii"]})
    _wait_for(lambda: _passes(gw, key, "the zebra-protocol again"))


def test_admin_refuses_malformed_guardrails(admin):
    reply = admin.call("POST", "/key/generate", {"guardrails": "pii"})
    assert reply.status_code == 400 and "guardrails" in reply.text


def test_spend_row_records_what_guardrails_did(gw, admin, upstream):
    key = admin.post("/key/generate", {"guardrails": ["pii"], "key_alias": "guard-spend"})["key"]
    reply = anthropic_client(gw, api_key=key, max_retries=0).messages.with_raw_response.create(
        model="claude-haiku-4-5",
        max_tokens=16,
        messages=[{"role": "user", "content": "mail a@example.com and b@example.com"}],
    )
    assert reply.headers["x-parley-guardrails"] == "pii:masked=2"
    rows = admin.wait_logs(1, request_id=reply.headers["request-id"])
    assert rows and rows[0]["guardrails"] == "pii:masked=2"
    assert "example.com" not in str(rows[0])


def _passes(gw, key: str, text: str) -> bool:
    try:
        ask(gw, key, text)
    except anthropic.BadRequestError:
        return False
    return True


def _wait_for(check, timeout: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the change did not reach the gateway"
        time.sleep(0.2)


def test_blocked_stream_still_writes_its_spend_row(gw, admin, upstream):
    key = admin.post("/key/generate", {"guardrails": ["outwords"], "key_alias": "guard-stream"})["key"]
    upstream.script(
        {"content": [{"type": "text", "text": "All fine until the zebra-protocol shows up here."}]}
    )
    client = anthropic_client(gw, api_key=key, max_retries=0)
    with (
        pytest.raises(anthropic.APIStatusError),
        client.messages.stream(
            model="claude-haiku-4-5", max_tokens=32, messages=[{"role": "user", "content": "go"}]
        ) as stream,
    ):
        request_id = stream.response.headers["request-id"]
        for _ in stream.text_stream:
            pass
    rows = admin.wait_logs(1, request_id=request_id)
    assert rows and rows[0]["error_type"] == "guardrail_blocked"
    assert rows[0]["guardrails"] == "outwords:blocked"  # the header said pass; the row knows more
    assert rows[0]["prompt_tokens"] > 0


def test_admin_refuses_guardrails_not_configured(admin):
    reply = admin.call("POST", "/key/generate", {"guardrails": ["pii", "nope"]})
    assert reply.status_code == 400 and "nope" in reply.text
    reply = admin.call("POST", "/team/new", {"team_id": "t-nope", "guardrails": ["nope"]})
    assert reply.status_code == 400 and "nope" in reply.text
