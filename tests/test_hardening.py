"""No way around budgets or model limits on `/anthropic/*`, `/v1/messages` and chat completions:
one canonical path and one strict body decoder for what is checked, billed and forwarded.

The gateway runs in process (the real ASGI app) in front of the fake upstream; the official
anthropic SDK and raw HTTP play the client, and the spend log and the upstream's record judge."""

from __future__ import annotations

import http.client
import socket
import time

import orjson
import pytest

from keys_support import MASTER, Admin
from parley.testing.inprocess import anthropic_client
from parley.testing.procs import anthropic_deployment

MODEL = "claude-sonnet-4-5-20250929"


def _config(upstream, database: str) -> dict:
    return {
        "model_list": [anthropic_deployment("claude-sonnet-4-5", upstream, model=MODEL)],
        "general_settings": {"master_key": MASTER, "database_url": database, "spend_flush_interval": 0.05},
        "anthropic_passthrough": {"api_base": upstream.url, "api_key": "sk-ant-real-upstream"},
    }


@pytest.fixture(scope="module")
def gateway(start_inprocess_module, fake_upstream, tmp_path_factory):
    return start_inprocess_module(_config(fake_upstream, str(tmp_path_factory.mktemp("hard") / "parley.db")))


@pytest.fixture(scope="module")
def served(start_gateway, fake_upstream, tmp_path_factory):
    """A real process: an HTTP client library would tidy `.` out of the path before sending it."""
    return start_gateway(_config(fake_upstream, str(tmp_path_factory.mktemp("hard2") / "parley.db")))


def _raw_post(gateway, path: str, key: str, body: bytes) -> tuple[int, dict]:
    """POST with the path sent exactly as written."""
    host, port = gateway.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", path, body, {"x-api-key": key, "content-type": "application/json"})
        reply = conn.getresponse()
        return reply.status, orjson.loads(reply.read())
    finally:
        conn.close()


@pytest.fixture
def admin(gateway):
    return Admin.of(gateway)


def _post(gateway, path: str, key: str, body: bytes, content_type: str = "application/json"):
    return gateway.http.post(
        path,
        content=body,
        headers={"x-api-key": key, "content-type": content_type, "anthropic-version": "2023-06-01"},
    )


def _spent_key(admin, budget: float = 0.001) -> str:
    """A key whose budget is already used up."""
    key = admin.post("/key/generate", {"max_budget": budget})["key"]
    admin.post("/key/update", {"key": key, "spend": 15.0})
    return key


BODY = {"model": MODEL, "max_tokens": 100000, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", ""])
def test_a_json_body_under_another_content_type_is_still_budgeted(gateway, admin, upstream, content_type):
    key = _spent_key(admin)
    reply = _post(gateway, "/anthropic/v1/messages", key, orjson.dumps(BODY), content_type)
    assert reply.status_code == 402 and reply.json()["error"]["type"] == "billing_error"
    assert upstream.requests() == []


@pytest.mark.parametrize("route", ["/anthropic/v1/messages", "/v1/messages"])
def test_a_body_we_cannot_decode_is_refused_not_forwarded(gateway, admin, upstream, route):
    key = admin.post("/key/generate", {})["key"]
    lone_surrogate = (
        b'{"model": "%s", "max_tokens": 10, "messages": [{"role": "user", "content": "\\ud800"}]}'
    )
    reply = _post(gateway, route, key, lone_surrogate % MODEL.encode())
    assert reply.status_code == 400 and reply.json()["error"]["type"] == "invalid_request_error"
    assert upstream.requests() == []


@pytest.mark.parametrize(
    "path", ["/anthropic/v1/./messages", "/anthropic/v1/%2e/messages", "/anthropic/v1//messages"]
)
@pytest.mark.process
def test_dot_segments_do_not_escape_the_budget(served, upstream, path):
    key = Admin(served.url).post("/key/generate", {"max_budget": 0.01})["key"]
    status, reply = _raw_post(served, path, key, orjson.dumps(BODY))
    assert status == 200, reply
    [seen] = upstream.requests()
    assert seen["path"] == "/v1/messages"
    assert orjson.loads(seen["body"])["max_tokens"] < 1000  # capped to what $0.01 can pay for


@pytest.mark.process
def test_dot_segments_are_billed_as_the_route_they_reach(served, upstream):
    admin = Admin(served.url)
    key = admin.post("/key/generate", {})["key"]
    upstream.script({"usage": {"input_tokens": 1000, "output_tokens": 1000}})
    status, _ = _raw_post(
        served, "/anthropic/v1/x/../messages", key, orjson.dumps(dict(BODY, max_tokens=2000))
    )
    assert status == 200
    assert upstream.requests()[0]["path"] == "/v1/messages"
    [row] = admin.wait_logs(1, api_key=key)
    assert row["route"] == "/anthropic/v1/messages" and row["spend"] == pytest.approx(
        (1000 * 3 + 1000 * 15) / 1e6
    )


@pytest.mark.parametrize("route", ["/anthropic/v1/messages", "/v1/messages"])
def test_a_repeated_model_key_is_refused(gateway, admin, upstream, route):
    key = admin.post("/key/generate", {"models": ["claude-haiku-4-5"]})["key"]
    raw = b'{"model": "%s", "model": "claude-haiku-4-5", "max_tokens": 10, "messages": []}' % MODEL.encode()
    reply = _post(gateway, route, key, raw)
    assert reply.status_code == 400 and "repeats the key(s) model" in reply.json()["error"]["message"]
    assert upstream.requests() == []


def test_each_batch_item_model_is_checked_against_the_key(gateway, admin, upstream):
    key = admin.post("/key/generate", {"models": ["claude-haiku-4-5"]})["key"]
    client = anthropic_client(gateway, base_url=gateway.url + "/anthropic", api_key=key, max_retries=0)
    with pytest.raises(Exception) as info:
        client.messages.batches.create(
            requests=[{"custom_id": "a", "params": {"model": MODEL, "max_tokens": 5, "messages": []}}]
        )
    assert getattr(info.value, "status_code", None) == 403
    assert MODEL in str(info.value)
    assert upstream.requests() == []


MESSAGE = {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def _acting_for(who: str) -> list:
    return [
        ("/v1/messages", MESSAGE, {"x-parley-end-user": who}),
        ("/v1/messages", {**MESSAGE, "metadata": {"user_id": who}}, {}),
        ("/anthropic/v1/messages", {**MESSAGE, "litellm_metadata": {"user": who}}, {}),
        ("/v1/chat/completions", {**MESSAGE, "user": who}, {}),
    ]


@pytest.mark.parametrize("case", range(4))
def test_only_a_key_allowed_to_act_for_an_end_user_can_charge_its_budget(gateway, admin, upstream, case):
    who = f"acme-{case}"
    route, body, headers = _acting_for(who)[case]
    admin.post("/customer/new", {"user_id": who, "max_budget": 1})
    other = admin.post("/key/generate", {"end_users": ["someone-else"]})["key"]
    for key in (admin.post("/key/generate", {})["key"], other):
        reply = gateway.http.post(route, json=body, headers={"x-api-key": key, **headers})
        assert reply.status_code == 403, reply.text
        message = reply.json()["error"]["message"] if route != "/v1/chat/completions" else reply.text
        assert who in message and "end_users" in message
    assert upstream.requests() == []
    allowed = admin.post("/key/generate", {"end_users": [who]})["key"]
    anyone = admin.post("/key/generate", {"end_users": ["*"]})["key"]
    for key in (allowed, anyone):
        reply = gateway.http.post(route, json=body, headers={"x-api-key": key, **headers})
        assert reply.status_code == 200, reply.text
    rows = admin.wait_logs(4, end_user=who)
    assert sorted(r["status"] for r in rows) == [200, 200, 403, 403]
    assert all(r["spend"] == 0 for r in rows if r["status"] == 403)
    assert admin.get("/customer/info", end_user_id=who)["spend"] > 0


def test_any_key_may_label_spend_with_an_unmanaged_end_user(gateway, admin, upstream):
    key = admin.post("/key/generate", {})["key"]
    for _ in range(2):  # the second call finds the customer row the first spend created
        reply = gateway.http.post(
            "/v1/messages", json=MESSAGE, headers={"x-api-key": key, "x-parley-end-user": "walk-in"}
        )
        assert reply.status_code == 200, reply.text
    assert [r["end_user"] for r in admin.wait_logs(2, api_key=key)] == ["walk-in", "walk-in"]


def test_a_model_limited_key_may_make_calls_that_name_no_model(gateway, admin, upstream):
    key = admin.post("/key/generate", {"models": ["claude-haiku-4-5"]})["key"]
    reply = gateway.http.get("/anthropic/v1/models", headers={"x-api-key": key})
    assert reply.status_code != 403
    assert upstream.requests()[0]["path"] == "/v1/models"


@pytest.mark.process
def test_identity_and_other_credentials_never_reach_the_upstream(served, upstream):
    key = Admin(served.url).post("/key/generate", {})["key"]
    host, port = served.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    sent = {
        "x-api-key": key,
        "content-type": "application/json",
        "connection": "keep-alive, x-hop-secret",
        "x-hop-secret": "hop",
        "x-forwarded-for": "10.1.2.3",
        "forwarded": "for=10.1.2.3",
        "api-key": "azure-secret",
        "x-goog-api-key": "google-secret",
        "anthropic-beta": "some-beta",
    }
    try:
        conn.request("POST", "/anthropic/v1/messages", orjson.dumps(dict(BODY, max_tokens=10)), sent)
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    seen = upstream.requests()[0]["headers"]
    for name in ("x-hop-secret", "x-forwarded-for", "forwarded", "api-key", "x-goog-api-key"):
        assert name not in seen, name
    assert seen["anthropic-beta"] == "some-beta" and seen["x-api-key"] == "sk-ant-real-upstream"


def test_the_pass_through_keeps_our_organisation_s_headers_to_itself(gateway, admin, upstream):
    key = admin.post("/key/generate", {})["key"]
    ours = {
        "set-cookie": "session=abc",
        "anthropic-organization-id": "org-123",
        "anthropic-ratelimit-requests-limit": "4000",
        "request-id": "req_upstream_1",
    }
    upstream.script({"headers": ours})
    reply = _post(gateway, "/anthropic/v1/messages", key, orjson.dumps(dict(BODY, max_tokens=10)))
    assert reply.status_code == 200
    for name in ("set-cookie", "anthropic-organization-id", "anthropic-ratelimit-requests-limit"):
        assert name not in reply.headers, name
    assert reply.headers["request-id"] == "req_upstream_1" and reply.headers["content-type"].startswith(
        "application/json"
    )


def test_oversized_headers_are_refused_in_the_api_envelope(gateway, admin, upstream):
    key = admin.post("/key/generate", {})["key"]
    reply = gateway.http.post(
        "/v1/messages", content=orjson.dumps(BODY), headers={"x-api-key": key, "x-padding": "x" * 100_000}
    )
    assert reply.status_code == 431 and reply.json()["type"] == "error"
    assert upstream.requests() == []


def test_the_pass_through_honours_the_request_size_limit(start_inprocess, fake_upstream, tmp_path):
    config = _config(fake_upstream, str(tmp_path / "parley.db"))
    config["general_settings"]["max_request_size_mb"] = 0.001
    gw = start_inprocess(config)
    key = Admin.of(gw).post("/key/generate", {})["key"]
    big = orjson.dumps(dict(BODY, messages=[{"role": "user", "content": "x" * 5000}]))
    reply = _post(gw, "/anthropic/v1/messages", key, big)
    assert reply.status_code == 413 and reply.json()["error"]["type"] == "request_too_large"


@pytest.mark.process
def test_a_client_leaving_mid_upload_is_logged_as_such_not_as_a_bug(served):
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"x-api-key: " + MASTER.encode() + b"\r\ncontent-length: 100000\r\n\r\n" + b'{"model": "claude'
        )
    deadline = time.monotonic() + 5
    while '"status":499' not in served.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = served.log()
    assert '"status":499' in log and '"error":"client_disconnected"' in log
    assert "unexpected error" not in log and "Traceback" not in log


@pytest.mark.process
def test_revocation_reaches_every_worker_within_a_second_without_redis(
    start_gateway, fake_upstream, tmp_path
):
    gw = start_gateway(_config(fake_upstream, str(tmp_path / "parley.db")), workers=2)
    admin = Admin(gw.url)
    small = orjson.dumps(dict(BODY, model="claude-sonnet-4-5", max_tokens=5))
    user = admin.post("/user/new", {"user_id": "leaver"})["user_id"]
    key = admin.post("/key/generate", {"user_id": user})["key"]
    for _ in range(8):  # warm both workers' key caches
        assert _raw_post(gw, "/v1/messages", key, small)[0] == 200
    admin.post("/user/delete", {"user_ids": [user]})
    time.sleep(1.2)
    statuses = {_raw_post(gw, "/v1/messages", key, small)[0] for _ in range(8)}
    assert statuses == {401}


def test_a_404_tells_a_limited_key_only_what_it_may_use(gateway, admin):
    key = admin.post("/key/generate", {"models": ["claude-haiku-4-5"]})["key"]
    reply = _post(gateway, "/v1/messages", key, orjson.dumps(dict(BODY, model="no-such-model")))
    message = reply.json()["error"]["message"]
    assert reply.status_code == 404 and "claude-haiku-4-5" in message
    assert "claude-sonnet-4-5" not in message  # served, but not this key's to know
    unlimited = admin.post("/key/generate", {})["key"]
    reply = _post(gateway, "/v1/messages", unlimited, orjson.dumps(dict(BODY, model="no-such-model")))
    assert "claude-sonnet-4-5" in reply.json()["error"]["message"]


@pytest.mark.process
@pytest.mark.parametrize(
    ("path", "length", "envelope"),
    [
        ("/v1/messages", b"abc", "anthropic"),
        ("/anthropic/v1/messages", b"-5", "anthropic"),
        ("/v1/chat/completions", b"12, 13", "openai"),
    ],
)
def test_a_request_that_does_not_parse_gets_the_api_envelope(served, path, length, envelope):
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %s\r\n\r\n{}"
            % (path.encode(), length)
        )
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/json" in head.lower()
    error = orjson.loads(body)
    if envelope == "anthropic":
        assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
        assert error["request_id"].startswith("req_")
    else:
        assert error["error"]["type"] == "invalid_request_error" and "param" in error["error"]
    assert "Content-Length" in error["error"]["message"]


@pytest.mark.process
@pytest.mark.parametrize("upgrade", [b"websocket", b"h2c"])
def test_a_request_asking_to_upgrade_is_answered_over_http_1_1(served, upgrade):
    """parley has no WebSocket route (uvicorn runs with ws="none"): an upgrade request is served as
    plain HTTP, and the log does not tell the operator to install a WebSocket library."""
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"GET /health/liveness HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: %s\r\n"
            b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n" % upgrade
        )
        raw = b""
        while b"\r\n\r\n" not in raw or not raw.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:200]
    assert "WebSocket library" not in served.log()
