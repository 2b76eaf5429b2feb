"""A request's headers and body, read straight from ASGI (no Starlette objects on the hot routes)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from starlette.requests import Request
from starlette.types import Receive

from parley.core.errors import GatewayError

Raw = list[tuple[bytes, bytes]]


class RequestHeaders(Mapping[str, str]):
    """The request's headers, decoded once (latin-1, as Starlette does).

    It reads like Starlette's `Headers`: a lookup (any case) gives a name's first value; `items()`,
    `keys()`, `values()`, iteration and `len` list every header in order, repeats included.
    `size` is the header block's bytes (names and values), for the gateway's limit.
    """

    __slots__ = ("_first", "_items", "raw", "size")

    def __init__(self, raw: Raw) -> None:
        self.raw = raw
        items = self._items = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]
        first = dict(items)
        if len(first) != len(items):  # a repeated name: lookups give its first value
            first = dict(reversed(items))
        self._first = first
        self.size = sum(len(k) + len(v) for k, v in raw)

    def __getitem__(self, key: str) -> str:
        value = self._first.get(key)
        if value is None:
            return self._first[key.lower()]
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self._first.get(key)
        if value is None:
            return self._first.get(key.lower(), default)
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._first or (isinstance(key, str) and key.lower() in self._first)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[str]:  # type: ignore[override]
        return [k for k, _ in self._items]

    def values(self) -> list[str]:  # type: ignore[override]
        return [v for _, v in self._items]

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        return list(self._items)

    def getlist(self, key: str) -> list[str]:
        key = key.lower()
        return [v for k, v in self._items if k == key]

    def __repr__(self) -> str:
        return f"RequestHeaders({self._items!r})"


async def receive_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    """The raw body, refusing anything over `limit` bytes with 413 before reading it all."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                raise _too_large(limit)
            if not message.get("more_body", False):
                if not chunks:
                    return body  # the usual case: the whole body in one message
                chunks.append(body)
                return b"".join(chunks)
            chunks.append(body)
        elif kind == "http.disconnect":  # not a bug: recorded as the client's leaving, no traceback
            raise GatewayError(
                499, "the client disconnected while sending the request", "client_disconnected"
            )


async def read_body(request: Request, limit: int) -> bytes:
    """`receive_body` for a Starlette route."""
    return await receive_body(request.receive, request.headers, limit)


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        413, f"request body exceeds the gateway's limit of {limit} bytes", "request_too_large"
    )
