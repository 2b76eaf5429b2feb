"""Reading a request body from Starlette, with the size limit applied as it streams in."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from parley.core.errors import GatewayError


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing anything over `limit` bytes with 413 before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:  # not a bug: recorded as the client's leaving, no traceback
        raise GatewayError(
            499, "the client disconnected while sending the request", "client_disconnected"
        ) from None
    return b"".join(chunks)


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        413, f"request body exceeds the gateway's limit of {limit} bytes", "request_too_large"
    )
