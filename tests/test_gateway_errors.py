"""Every gateway-made and upstream error reaches the anthropic SDK as its matching exception
(gateway in process: parley.testing.inprocess)."""

from __future__ import annotations

import urllib.request

import anthropic
import orjson
import pytest

from parley.testing.procs import anthropic_deployment, free_port

MASTER = "sk-parley-master-errors"


@pytest.fixture(scope="module")
def gateway(start_inprocess_module, fake_upstream):
    return start_inprocess_module(
        {
            "model_list": [
                anthropic_deployment("claude-x", fake_upstream),
                anthropic_deployment("slow", fake_upstream, timeout=0.5),
                {
                    "model_name": "down",
                    "params": {
                        "model": "anthropic/down",
                        "api_key": "k",
                        "api_base": f"http://127.0.0.1:{free_port()}",
                    },
                },
            ],
            "general_settings": {"master_key": MASTER, "max_request_size_mb": 1},
            "router_settings": {
                "num_retries": 0,
                "allowed_fails": 1000,
            },  # these tests are about what one failure looks like
        }
    )


@pytest.fixture
def client(gateway):
    return gateway.anthropic(api_key=MASTER, max_retries=0)


def post(gateway, body: bytes, headers: dict | None = None) -> tuple[int, dict, dict]:
    req = urllib.request.Request(
        gateway.url + "/v1/messages",
        data=body,
        method="POST",
        headers={"x-api-key": MASTER, "content-type": "application/json", **(headers or {})},
    )
    try:
        with gateway.urlopen(req) as r:
            return r.status, dict(r.headers), orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), orjson.loads(e.read())


def hi(**kw):
    return dict(model="claude-x", max_tokens=8, messages=[{"role": "user", "content": "hi"}], **kw)


@pytest.mark.parametrize(
    "body, message",
    [
        (b'{"model": "claude-x", "max_tokens": 5,', "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"max_tokens": 5, "messages": []}', "model: Field required"),
        (b'{"model": "claude-x", "max_tokens": 5}', "messages: Field required"),
        (b'{"model": "claude-x", "messages": []}', "max_tokens: Field required"),
        (b'{"model": "claude-x", "max_tokens": "5", "messages": []}', "max_tokens: Input should be"),
        (b'{"model": 7, "max_tokens": 5, "messages": []}', "model: Input should be a valid string"),
    ],
)
def test_bad_bodies_get_400_envelope(gateway, body, message):
    status, headers, data = post(gateway, body)
    assert status == 400
    assert data["type"] == "error"
    assert data["error"]["type"] == "invalid_request_error"
    assert message in data["error"]["message"]
    assert data["request_id"] == headers["request-id"]


def test_missing_field_raises_bad_request(client):
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: Field required"):
        client.messages.create(**hi(extra_body={"max_tokens": None}))


def test_missing_key_and_wrong_key(gateway):
    status, _, data = post(gateway, orjson.dumps(hi()), headers={"x-api-key": ""})
    assert (status, data["error"]["type"]) == (401, "authentication_error")
    with pytest.raises(anthropic.AuthenticationError):
        gateway.anthropic(api_key="nope", max_retries=0).messages.create(**hi())


def test_bearer_token_is_accepted(gateway):
    bearer = gateway.anthropic(auth_token=MASTER, api_key=None, max_retries=0)
    assert bearer.messages.create(**hi()).content[0].text.startswith("Hello!")


def test_unknown_model_lists_served_models(client):
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(**dict(hi(), model="gpt-nine"))
    assert "claude-x" in info.value.message and "gpt-nine" in info.value.message


def test_body_over_limit_is_413(client):
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(**dict(hi(), messages=[{"role": "user", "content": "x" * (2 << 20)}]))
    assert info.value.status_code == 413
    assert info.value.body["error"]["type"] == "request_too_large"


def test_upstream_unreachable_is_502(client):
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(**dict(hi(), model="down"))
    assert info.value.status_code == 502
    assert info.value.body["error"]["type"] == "api_error"


def test_upstream_timeout_is_504(client, upstream):
    upstream.script({"delay": 2})
    with pytest.raises(anthropic.InternalServerError) as info:
        client.messages.create(**dict(hi(), model="slow"))
    assert info.value.status_code == 504
    assert info.value.body["error"]["type"] == "timeout_error"


@pytest.mark.parametrize(
    "status, error_type, exc",
    [
        (429, "rate_limit_error", anthropic.RateLimitError),
        (529, "overloaded_error", anthropic.InternalServerError),
        (400, "invalid_request_error", anthropic.BadRequestError),
        (403, "permission_error", anthropic.PermissionDeniedError),
    ],
)
def test_upstream_errors_pass_through_unchanged(client, upstream, status, error_type, exc):
    wording = f"upstream says no ({status}) exactly like this"
    upstream.script(
        {"status": status, "error": {"type": error_type, "message": wording}, "headers": {"retry-after": "7"}}
    )
    with pytest.raises(exc) as info:
        client.messages.create(**hi())
    assert info.value.status_code == status
    assert info.value.body["error"] == {"type": error_type, "message": wording}
    assert info.value.response.headers.get("retry-after") == "7"


def test_upstream_garbage_becomes_502(client, upstream):
    upstream.script({"raw": "<html>bad gateway</html>", "content_type": "text/html"})
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(**hi())
    assert info.value.status_code == 502
    assert "invalid response" in info.value.body["error"]["message"]


def test_upstream_html_error_page_keeps_status_in_anthropic_envelope(client, upstream):
    upstream.script({"raw": "<html>Service Unavailable</html>", "status": 503, "content_type": "text/html"})
    with pytest.raises(anthropic.InternalServerError) as info:
        client.messages.create(**hi())
    assert info.value.status_code == 503
    assert info.value.body["type"] == "error"


def test_unknown_route_and_method(gateway):
    req = urllib.request.Request(gateway.url + "/v1/nothing", headers={"x-api-key": MASTER})
    with pytest.raises(urllib.error.HTTPError) as info:
        gateway.urlopen(req)
    assert info.value.code == 404
    assert orjson.loads(info.value.read())["error"]["type"] == "not_found_error"
    req = urllib.request.Request(gateway.url + "/v1/messages", method="GET")
    with pytest.raises(urllib.error.HTTPError) as info:
        gateway.urlopen(req)
    assert info.value.code == 405


def test_root_and_health_answer_without_key(gateway):
    for path, method in (
        ("/", "GET"),
        ("/", "HEAD"),
        ("/health/liveness", "GET"),
        ("/health/readiness", "GET"),
    ):
        with gateway.urlopen(urllib.request.Request(gateway.url + path, method=method)) as r:
            assert r.status == 200
            assert r.headers["request-id"].startswith("req_")
