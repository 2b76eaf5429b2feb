"""uvicorn's httptools protocol, answering a request it cannot parse in the called API's envelope.

A request line or header block that does not parse (a garbage `Content-Length`, a bad chunk size,
a space in a header name) never reaches the application: uvicorn answers it with a plain-text 400.
Clients of parley parse errors as JSON, so the same 400 goes out as the Anthropic error envelope,
or OpenAI's on the Chat Completions routes, and the connection is closed as before.

parley has no WebSocket route and runs uvicorn with `ws="none"` (the `websockets` protocol costs
a worker ~2.5 MB): a request asking to upgrade (WebSocket, `h2c`) is answered over HTTP/1.1, as
before, without uvicorn's warning that no WebSocket library is installed.

A reply with a Content-Length goes out in one write, head and body together (`CorkedCycle`).
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from parley.core.context import new_request_id
from parley.core.errors import anthropic_error_body, openai_error_body

MESSAGE = "malformed HTTP request: the request line or a header (e.g. Content-Length) could not be parsed"


class _Collect:
    """Stands in for the transport while uvicorn renders one ASGI message: keeps what it writes."""

    __slots__ = ("closed", "data", "transport")

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.data = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed or bool(self.transport.is_closing())


class CorkedCycle(RequestResponseCycle):
    """uvicorn's request cycle, but a head with a Content-Length waits for the body's first bytes.

    uvicorn writes the head when `http.response.start` is sent and the body when it comes; uvloop
    writes each at once: two system calls and two TCP segments per reply (a loopback write costs
    ~5.5 µs of system time here). The head is rendered and checked by uvicorn as before, kept, and
    written with the next message's bytes. Heads of chunked replies (streams) and of HEAD requests
    (no body is written) go out at once, as before."""

    _held = b""

    async def send(self, message: Any) -> None:
        held = self._held
        if self.response_started and not held:
            await super().send(message)
            return
        real = self.transport
        collect = _Collect(real)
        self.transport = collect  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            self.transport = real
            data = held + collect.data
            self._held = b""
            if not held and self.chunked_encoding is False and self.scope["method"] != "HEAD":
                self._held = data  # the head: out with the body
            elif data and not self.disconnected:
                real.write(data)
            if collect.closed:
                real.close()


class EnvelopeHttpToolsProtocol(HttpToolsProtocol):
    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if type(self.cycle) is RequestResponseCycle:  # (not swapped yet; None before a request)
            self.cycle.__class__ = CorkedCycle

    def _unsupported_upgrade_warning(self) -> None:
        self.logger.debug("upgrade request served over HTTP/1.1 (parley has no WebSocket route)")

    def send_400_response(self, msg: str) -> None:
        path = bytes(getattr(self, "url", b"") or b"").split(b"?", 1)[0]
        if path.endswith(b"/chat/completions"):
            body = openai_error_body(MESSAGE, "invalid_request_error")
        else:
            body = anthropic_error_body("invalid_request_error", MESSAGE, new_request_id())
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body))
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + body)
        self.transport.close()
