"""How a reply reaches the socket: a reply with a Content-Length in one write, head and body
together (uvicorn wrote the head and the body apart: two system calls and two TCP segments per
reply); the heads of streams and of HEAD replies at once, as before. uvicorn's own protocol runs
here, on a transport that records each write."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from parley.server.protocol import EnvelopeHttpToolsProtocol


class Recorder:
    """The socket side of a transport: each `write` call kept as it came."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 4000), "peername": ("127.0.0.1", 5000)}.get(name, default)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def set_protocol(self, protocol: Any) -> None: ...


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/stream":  # chunked: the head must not wait for the first event
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    body = b'{"ok":true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if path == "/fail":  # a bug after the head: uvicorn closes the connection
        raise RuntimeError("boom")
    if path == "/parts":  # a Content-Length body sent in two messages
        await send({"type": "http.response.body", "body": body[:4], "more_body": True})
        await send({"type": "http.response.body", "body": body[4:]})
    else:
        await send({"type": "http.response.body", "body": body})


async def _serve(requests: bytes, replies: int) -> Recorder:
    config = Config(app=app, http=EnvelopeHttpToolsProtocol, ws="none", lifespan="off", log_level="warning")
    config.load()
    protocol = EnvelopeHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    transport = Recorder()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(requests)
    for _ in range(400):  # until the last reply is complete
        heads = sum(w.startswith(b"HTTP/1.1 ") for w in transport.writes)
        if heads >= replies and protocol.cycle is not None and protocol.cycle.response_complete:
            break
        if transport.closed:
            break
        await asyncio.sleep(0.005)
    protocol.connection_lost(None)
    return transport


def _request(method: str, path: str) -> bytes:
    return f"{method} {path} HTTP/1.1\r\nhost: parley\r\n\r\n".encode()


def test_a_reply_with_a_content_length_goes_out_in_one_write():
    transport = asyncio.run(_serve(_request("POST", "/v1/messages"), 1))
    assert len(transport.writes) == 1
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 11" in head
    assert body == b'{"ok":true}'


def test_a_body_in_parts_sends_the_head_with_the_first_part():
    transport = asyncio.run(_serve(_request("POST", "/parts"), 1))
    assert len(transport.writes) == 2
    assert transport.writes[0].endswith(b"\r\n\r\n" + b'{"ok') and transport.writes[1] == b'":true}'


def test_a_stream_head_goes_out_before_its_first_event():
    transport = asyncio.run(_serve(_request("POST", "/stream"), 1))
    head = transport.writes[0]
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"transfer-encoding: chunked\r\n\r\n")
    assert transport.writes[1] == b"9\r\ndata: 1\n\n\r\n" and transport.writes[-1] == b"0\r\n\r\n"


def test_a_head_reply_and_the_replies_after_it_on_one_connection():
    """HEAD writes no body: its head goes out at once. Pipelined replies stay whole and in order."""
    requests = _request("HEAD", "/v1/messages") + _request("POST", "/a") + _request("POST", "/b")
    transport = asyncio.run(_serve(requests, 3))
    assert len(transport.writes) == 3
    assert b"content-length: 11" in transport.writes[0] and transport.writes[0].endswith(b"\r\n\r\n")
    assert all(
        w.startswith(b"HTTP/1.1 200 OK\r\n") and w.endswith(b'{"ok":true}') for w in transport.writes[1:]
    )


def test_a_held_head_goes_out_before_the_connection_closes():
    """The app fails after sending the head: the client gets the head, then the close, as from
    uvicorn without the cork."""
    transport = asyncio.run(_serve(_request("POST", "/fail"), 1))
    assert transport.closed and len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and transport.writes[0].endswith(
        b"\r\n\r\n"
    )
