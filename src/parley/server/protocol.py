"""uvicorn's httptools protocol, answering a request it cannot parse in the called API's envelope.

A request line or header block that does not parse (a garbage `Content-Length`, a bad chunk size,
a space in a header name) never reaches the application: uvicorn answers it with a plain-text 400.
Clients of parley parse errors as JSON, so the same 400 goes out as the Anthropic error envelope,
or OpenAI's on the Chat Completions routes, and the connection is closed as before.

parley has no WebSocket route and runs uvicorn with `ws="none"` (the `websockets` protocol costs
a worker ~2.5 MB): a request asking to upgrade (WebSocket, `h2c`) is answered over HTTP/1.1, as
before, without uvicorn's warning that no WebSocket library is installed.

A reply with a Content-Length goes out in one write, head and body together (`_Cork`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from parley.core.context import new_request_id
from parley.core.errors import anthropic_error_body, openai_error_body

MESSAGE = "malformed HTTP request: the request line or a header (e.g. Content-Length) could not be parsed"


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _Cork:
    """The transport a connection's request cycles write to: a reply head with a Content-Length is
    held and written with the body's first bytes.

    uvicorn writes the head when `http.response.start` is sent and the body when it comes; uvloop
    writes each at once: two system calls and two TCP segments per reply (a loopback write costs
    ~5.5 µs of system time here). Cycles write one after another (a pipelined request's cycle
    starts once the reply before it is complete), so the first write after a reply completes is
    the next head (an interim 100 Continue aside). Chunked heads (streams) go out at once; a held
    head whose reply writes no body (HEAD) goes out when the reply completes, or before a close."""

    __slots__ = ("head_next", "held", "transport")

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.held = b""
        self.head_next = True

    def write(self, data: bytes) -> None:
        if self.held:
            data = self.held + data
            self.held = b""
        elif self.head_next and data != CONTINUE:
            self.head_next = False
            if b"\r\ncontent-length: " in data:  # (uvicorn writes header names in lower case)
                self.held = data
                return
        self.transport.write(data)

    def complete(self) -> None:
        """The reply is complete: what is held goes out, and the next write is a head."""
        self.head_next = True
        if self.held:
            held, self.held = self.held, b""
            if not self.transport.is_closing():
                self.transport.write(held)

    def close(self) -> None:
        self.complete()
        self.transport.close()

    def is_closing(self) -> bool:
        return bool(self.transport.is_closing())

    def __getattr__(self, name: str) -> Any:  # anything else a cycle may ask of its transport
        return getattr(self.transport, name)


class EnvelopeHttpToolsProtocol(HttpToolsProtocol):
    _cork: _Cork | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._cork = _Cork(transport)

    def on_headers_complete(self) -> None:
        """uvicorn's, with the request's cycle made on the cork (the protocol keeps the transport)."""
        real = self.transport
        if self._cork is not None:
            self.transport = self._cork  # type: ignore[assignment]
        try:
            super().on_headers_complete()
        finally:
            self.transport = real

    def on_response_complete(self) -> None:
        if self._cork is not None:
            self._cork.complete()
        super().on_response_complete()

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
