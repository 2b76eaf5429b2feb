"""uvicorn's httptools protocol, answering a request it cannot parse in the called API's envelope.

A request line or header block that does not parse (a garbage `Content-Length`, a bad chunk size,
a space in a header name) never reaches the application: uvicorn answers it with a plain-text 400.
Clients of parley parse errors as JSON, so the same 400 goes out as the Anthropic error envelope,
or OpenAI's on the Chat Completions routes, and the connection is closed as before.

parley has no WebSocket route and runs uvicorn with `ws="none"` (the `websockets` protocol costs
a worker ~2.5 MB): a request asking to upgrade (WebSocket, `h2c`) is answered over HTTP/1.1, as
before, without uvicorn's warning that no WebSocket library is installed.

uvicorn writes a response head the moment the app sends `http.response.start`, and the body in a
second write: two `send` system calls, two TCP segments, for every small reply. The protocol here
sees its transport through `OneWrite`, which holds a head until the body's first write (or the end
of the event loop's current step) and sends both in one (ASGI lets a server wait for the first
body message before sending anything).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from parley.core.context import new_request_id
from parley.core.errors import anthropic_error_body, openai_error_body

MESSAGE = "malformed HTTP request: the request line or a header (e.g. Content-Length) could not be parsed"


class OneWrite:
    """A connection's transport, holding a response head alone (uvicorn writes it in one piece) to
    send it with the next write. Everything else goes straight through; order is kept."""

    __slots__ = ("_held", "_loop", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self.transport.writelines((held, data))  # one send (uvloop: one writev)
        elif data.startswith(b"HTTP/1.1 ") and data.endswith(b"\r\n\r\n"):
            self._held = data
            self._loop.call_soon(self.flush)  # no body in this step (a stream still waiting): send it
        else:
            self.transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self.transport.write(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # the rest of the transport's interface, unchanged
        return getattr(self.transport, name)


class EnvelopeHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(OneWrite(transport, self.loop))  # type: ignore[arg-type]

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
