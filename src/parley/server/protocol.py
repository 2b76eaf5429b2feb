"""uvicorn's httptools protocol, answering a request it cannot parse in the called API's envelope.

A request line or header block that does not parse (a garbage `Content-Length`, a bad chunk size,
a space in a header name) never reaches the application: uvicorn answers it with a plain-text 400.
Clients of parley parse errors as JSON, so the same 400 goes out as the Anthropic error envelope,
or OpenAI's on the Chat Completions routes, and the connection is closed as before.

parley has no WebSocket route and runs uvicorn with `ws="none"` (the `websockets` protocol costs
a worker ~2.5 MB): a request asking to upgrade (WebSocket, `h2c`) is answered over HTTP/1.1, as
before, without uvicorn's warning that no WebSocket library is installed.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from parley.core.context import new_request_id
from parley.core.errors import anthropic_error_body, openai_error_body

MESSAGE = "malformed HTTP request: the request line or a header (e.g. Content-Length) could not be parsed"


class EnvelopeHttpToolsProtocol(HttpToolsProtocol):
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
