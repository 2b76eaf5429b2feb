"""What a client sees on the wire from `parley serve`: replies whole and in order on one connection
(pipelined, HEAD last, streams), `Expect: 100-continue` answered before the body is sent, and
repeated request headers read as before (the first value decides; repeated betas reach the
upstream joined), now that the hot routes read the ASGI scope themselves (server/body.py)."""

from __future__ import annotations

import socket

import orjson
import pytest

MASTER = "sk-wire-master-0123456789"
BODY = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture(scope="module")
def served(start_gateway, fake_upstream):
    params = {"model": "anthropic/m", "api_base": fake_upstream.url, "api_key": "sk-ant-upstream"}
    return start_gateway(
        {
            "model_list": [{"model_name": "m", "litellm_params": params}],
            "general_settings": {"master_key": MASTER, "database_url": "none"},
        }
    )


def _connect(served) -> socket.socket:
    host, port = served.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _post(path: str, body: bytes, extra: str = "") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nhost: parley\r\nx-api-key: {MASTER}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def _read_reply(f) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 reply off a buffered socket file: status, headers, body (Content-Length or
    chunked; none for HEAD, which the caller knows)."""
    status = int(f.readline().split()[1])
    headers = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, b""


def _read_body(f, headers: dict[str, str]) -> bytes:
    if "content-length" in headers:
        return f.read(int(headers["content-length"]))
    assert headers.get("transfer-encoding") == "chunked"
    out = b""
    while (size := int(f.readline().strip(), 16)) > 0:
        out += f.read(size)
        f.readline()
    f.readline()
    return out


@pytest.mark.process
def test_pipelined_replies_arrive_whole_and_in_order(served, upstream):
    stream = orjson.dumps(dict(BODY, stream=True))
    requests = (
        _post("/v1/messages", orjson.dumps(BODY))
        + b"GET /health/liveness HTTP/1.1\r\nhost: parley\r\n\r\n"
        + _post("/v1/messages", stream)
        + b"HEAD /health/liveness HTTP/1.1\r\nhost: parley\r\n\r\n"
    )
    with _connect(served) as sock:
        sock.sendall(requests)  # all four at once: the server answers them one after the other
        f = sock.makefile("rb")
        status, headers, _ = _read_reply(f)
        message = orjson.loads(_read_body(f, headers))
        assert status == 200 and message["type"] == "message" and headers["request-id"].startswith("req_")
        status, headers, _ = _read_reply(f)
        assert status == 200 and orjson.loads(_read_body(f, headers))["status"] == "healthy"
        status, headers, _ = _read_reply(f)
        events = _read_body(f, headers).decode()
        assert status == 200 and headers["content-type"].startswith("text/event-stream")
        assert events.startswith("event: message_start") and "event: message_stop" in events
        sock.settimeout(2)  # well before the keep-alive timeout (5 s) closes the connection
        status, headers, _ = _read_reply(f)  # HEAD, last: a head with no body write to go with it
        assert status == 200 and "content-length" in headers


@pytest.mark.process
def test_expect_100_continue_is_answered_before_the_body_is_sent(served, upstream):
    body = orjson.dumps(BODY)
    with _connect(served) as sock:
        sock.sendall(
            _post("/v1/messages", b"", "expect: 100-continue\r\n").replace(
                b"length: 0", b"length: %d" % len(body)
            )
        )
        sock.settimeout(3)  # curl waits 1 s for it before sending anyway: the 100 must come first
        interim = sock.recv(4096)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        f = sock.makefile("rb")
        status, headers, _ = _read_reply(f)
        assert status == 200 and orjson.loads(_read_body(f, headers))["type"] == "message"


@pytest.mark.process
def test_repeated_headers_the_first_key_decides_and_betas_reach_the_upstream_joined(served, upstream):
    extra = "X-Api-Key: sk-not-the-key\r\nanthropic-beta: beta-a\r\nAnthropic-Beta: beta-b\r\n"
    with _connect(served) as sock:
        sock.sendall(_post("/v1/messages", orjson.dumps(BODY), extra))
        f = sock.makefile("rb")
        status, headers, _ = _read_reply(f)
        assert status == 200, _read_body(f, headers)
    seen = upstream.requests()[0]["headers"]
    assert seen["anthropic-beta"] == "beta-a,beta-b" and seen["x-api-key"] == "sk-ant-upstream"
    with _connect(served) as sock:  # the other way round: the first key is wrong, so it is refused
        wrong_first = _post("/v1/messages", orjson.dumps(BODY)).replace(
            f"x-api-key: {MASTER}".encode(), f"x-api-key: sk-not-the-key\r\nx-api-key: {MASTER}".encode()
        )
        sock.sendall(wrong_first)
        f = sock.makefile("rb")
        status, headers, _ = _read_reply(f)
        error = orjson.loads(_read_body(f, headers))
        assert status == 401 and error["error"]["type"] == "authentication_error"
