"""The anthropic SDK with generated keys: each refusal raises the SDK's matching exception.
(gateway in process: parley.testing.inprocess)."""

from __future__ import annotations

import datetime as dt

import anthropic
import orjson
import pytest

from keys_support import MASTER, Admin, gateway_config


@pytest.fixture(scope="module")
def gateway(start_inprocess_module, fake_upstream, tmp_path_factory):
    url = str(tmp_path_factory.mktemp("sdk") / "parley.db")
    return start_inprocess_module(gateway_config(fake_upstream, url))


@pytest.fixture
def admin(gateway):
    return Admin.of(gateway)


def client(gateway, key, **kw):
    return gateway.anthropic(api_key=key, max_retries=0, **kw)


def ask(c, model="claude-sonnet-4-5", **kw):
    return c.messages.create(model=model, max_tokens=32, messages=[{"role": "user", "content": "hi"}], **kw)


def test_allowed_model_works_disallowed_is_permission_error(gateway, admin, upstream):
    key = admin.post("/key/generate", {"models": ["claude-sonnet-*", "priced"]})["key"]
    c = client(gateway, key)
    assert ask(c).content[0].text == "Hello! You said: hi"
    assert ask(c, model="priced").stop_reason == "end_turn"
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        ask(c, model="claude-haiku-4-5")
    assert e.value.body["error"]["type"] == "permission_error"
    assert "claude-haiku-4-5" in e.value.message


def test_bearer_header_is_accepted(gateway, admin, upstream):
    key = admin.post("/key/generate", {})["key"]
    c = gateway.anthropic(auth_token=key, max_retries=0)
    assert ask(c).content


def test_blocked_key_is_authentication_error(gateway, admin, upstream):
    key = admin.post("/key/generate", {"key_alias": "to-block"})["key"]
    ask(client(gateway, key))  # now cached
    admin.post("/key/block", {"key": key})
    with pytest.raises(anthropic.AuthenticationError, match="blocked"):
        ask(client(gateway, key))


def test_expired_key_is_authentication_error(gateway, admin, upstream):
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    key = admin.post("/key/generate", {"expires": past})["key"]
    with pytest.raises(anthropic.AuthenticationError, match="expired"):
        ask(client(gateway, key))


def test_unknown_key_is_authentication_error(gateway):
    with pytest.raises(anthropic.AuthenticationError):
        ask(client(gateway, "sk-never-issued-0000"))


def test_exhausted_budget_is_payment_required(gateway, admin, upstream):
    key = admin.post("/key/generate", {"key_alias": "broke", "max_budget": 0.000001})["key"]
    with pytest.raises(anthropic.PaymentRequiredError) as e:
        ask(client(gateway, key))
    assert e.value.status_code == 402
    assert e.value.body["error"]["type"] == "billing_error"
    assert "key broke" in e.value.message
    assert upstream.requests() == []


def test_exhausted_team_and_customer_budgets_name_the_budget(gateway, admin, upstream):
    team = admin.post("/team/new", {"team_id": "poor-team", "max_budget": 0})["team_id"]
    key = admin.post("/key/generate", {"team_id": team, "max_budget": 100})["key"]
    with pytest.raises(anthropic.PaymentRequiredError, match="team 'poor-team'"):
        ask(client(gateway, key))
    admin.post("/customer/new", {"user_id": "poor-customer", "max_budget": 0})
    rich = admin.post("/key/generate", {"end_users": ["poor-customer"]})["key"]
    with pytest.raises(anthropic.PaymentRequiredError, match="end user 'poor-customer'"):
        ask(client(gateway, rich), extra_headers={"x-parley-end-user": "poor-customer"})


def test_spent_budget_refuses_the_next_call(gateway, admin, upstream):
    key = admin.post("/key/generate", {"max_budget": 0.0005})["key"]
    c = client(gateway, key)
    upstream.script({"usage": {"input_tokens": 10, "output_tokens": 30}})
    ask(c)  # 10 x $3/M + 30 x $15/M = $0.00048
    with pytest.raises(anthropic.PaymentRequiredError):
        ask(c)
    info = admin.get("/key/info", key=key)["info"]
    assert info["spend"] == pytest.approx(0.00048)


def test_claude_code_metadata_sets_end_user_and_session(gateway, admin, upstream):
    key = admin.post("/key/generate", {})["key"]
    user_id = orjson.dumps({"device_id": "dev-1", "account_uuid": "acct-42", "session_id": "sess-9"}).decode()
    ask(client(gateway, key), metadata={"user_id": user_id})
    device_only = orjson.dumps({"device_id": "dev-2", "account_uuid": "", "session_id": "s2"}).decode()
    ask(client(gateway, key), metadata={"user_id": device_only})
    rows = admin.wait_logs(2, api_key=key)
    assert {(r["end_user"], r["session_id"]) for r in rows} == {("acct-42", "sess-9"), ("dev-2", "s2")}
    sent = orjson.loads(upstream.requests()[0]["body"])
    assert sent["metadata"]["user_id"] == user_id  # forwarded untouched


def test_end_user_header_wins_over_litellm_metadata(gateway, admin, upstream):
    key = admin.post("/key/generate", {})["key"]
    ask(
        client(gateway, key),
        extra_headers={"x-parley-end-user": "from-header"},
        extra_body={"litellm_metadata": {"user": "from-body"}},
    )
    ask(client(gateway, key), extra_body={"litellm_metadata": {"user": "from-body"}})
    rows = admin.wait_logs(2, api_key=key)
    assert sorted(r["end_user"] for r in rows) == ["from-body", "from-header"]
    assert all("litellm_metadata" not in r["body"] for r in upstream.requests())


def test_master_key_still_works(gateway, upstream):
    assert ask(client(gateway, MASTER)).content
