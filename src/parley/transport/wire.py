"""The bytes of an upstream request and the text of its reply's head; body decompression.

`Wire` keeps what repeats per gateway (parsed origins, checked header names, decoded reply header
names) in small bounded dicts, so a request's head is one f-string per header, a join and an
encode. Request headers are refused if a value holds CR, LF or NUL (header injection); hop-by-hop
headers are never sent (the client sets Host, Content-Length and Accept-Encoding itself).
"""

from __future__ import annotations

import re
import zlib
from urllib.parse import quote

from parley.transport.h1 import ReplyTooLarge
from parley.transport.pool import Origin, parse_origin

# Reply headers never passed on (the body is decompressed and re-framed by the gateway).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
        "host",
    }
)

# Request headers of the caller's that are never sent: hop-by-hop, or set by the client itself.
_NOT_SENT = HOP_BY_HOP | {"proxy-connection", "expect", "accept-encoding"}
_SEND, _SKIP, _HOST, _ACCEPT, _IDEMPOTENCY = range(5)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)([^#]*)")
_UNSAFE = re.compile(r"[^!-~]")  # anything but printable ASCII (space, controls, non-ASCII)
_WITH_BODY_ANYWAY = frozenset({"POST", "PUT", "PATCH"})  # Content-Length: 0 when there is no body
_CACHE_MAX = 1024
DECODED = ("gzip", "x-gzip", "deflate")
ENCODING_HEADER = "Accept-Encoding: gzip, deflate\r\n"


class HeaderRefused(ValueError):
    """A request header that cannot be sent (a line break or NUL in it, or an invalid name)."""


class Wire:
    """Request heads and reply headers for one client (see the module docstring)."""

    __slots__ = ("_names", "_origins", "_reply_names")

    def __init__(self) -> None:
        self._origins: dict[tuple[str, str], Origin] = {}
        self._names: dict[str, int] = {}
        self._reply_names: dict[bytes, str] = {}

    def route(self, url: str) -> tuple[Origin, str]:
        """The origin and request target (path and query, percent-encoded) of `url`."""
        match = _URL.match(url)  # a #fragment is never sent
        if match is None:
            raise ValueError("not an absolute http(s) URL")
        scheme, authority, target = match.groups()
        origin = self._origins.get((scheme, authority))
        if origin is None:
            origin = parse_origin(scheme, authority)
            if len(self._origins) >= _CACHE_MAX:
                self._origins.clear()
            self._origins[(scheme, authority)] = origin
        if not target:
            target = "/"
        elif target[0] == "?":
            target = "/" + target
        if _UNSAFE.search(target):  # quote what may not appear raw; keep existing %-escapes
            target = quote(target, safe="!#$%&'()*+,/:;=?@[]~")
        return origin, target

    def head(
        self, method: str, target: str, origin: Origin, headers: dict[str, str], body: bytes | None
    ) -> tuple[bytes, bool]:
        """The request line and headers, and whether the request may be replayed (Go's rule:
        an idempotent method, or an Idempotency-Key header)."""
        parts = [f"{method} {target} HTTP/1.1\r\n"]
        host = origin.host_header
        accept = False
        replayable = method in ("GET", "HEAD", "OPTIONS", "TRACE")
        names = self._names
        for name, value in headers.items():
            kind = names.get(name)
            if kind is None:
                kind = _kind(name)
                if len(names) >= _CACHE_MAX:
                    names.clear()
                names[name] = kind
            if kind == _SEND:
                parts.append(f"{name}: {value}\r\n")
            elif kind == _HOST:
                host = value
            elif kind == _ACCEPT:
                accept = True
                parts.append(f"{name}: {value}\r\n")
            elif kind == _IDEMPOTENCY:
                replayable = True
                parts.append(f"{name}: {value}\r\n")
        parts.append(f"Host: {host}\r\n")
        if not accept:
            parts.append("Accept: */*\r\n")
        parts.append(ENCODING_HEADER)
        if body is not None:
            parts.append(f"Content-Length: {len(body)}\r\n")
        elif method in _WITH_BODY_ANYWAY:
            parts.append("Content-Length: 0\r\n")
        parts.append("\r\n")
        text = "".join(parts)
        lines = len(parts)
        if text.count("\n") != lines or text.count("\r") != lines or "\0" in text:
            raise HeaderRefused(_injected(method, target, host, headers))
        return text.encode("utf-8"), replayable

    def reply_headers(self, raw: list[tuple[bytes, bytes]]) -> tuple[dict[str, str], str | None, str | None]:
        """Reply headers (lower-case names, hop-by-hop removed, values as latin-1 so their bytes
        pass through unchanged), and the Content-Length and Content-Encoding values."""
        out: dict[str, str] = {}
        length = encoding = None
        names = self._reply_names
        for name, value in raw:
            key = names.get(name)
            if key is None:
                key = name.decode("latin-1").lower()
                if len(names) >= _CACHE_MAX:
                    names.clear()
                names[name] = key
            if key in HOP_BY_HOP:
                if key == "content-length":
                    length = value.decode("latin-1")
                elif key == "content-encoding":
                    encoding = value.decode("latin-1").strip().lower()
                continue
            out[key] = value.decode("latin-1")
        if encoding is not None and encoding not in DECODED:
            if encoding == "identity":
                encoding = None
            else:  # not ours to decode (br, zstd): passed on as it came, with its header
                out["content-encoding"] = encoding
                encoding = None
        return out, length, encoding


def _kind(name: str) -> int:
    if not _TOKEN.fullmatch(name):
        raise HeaderRefused(f"upstream request header name {name!r} is not a valid HTTP token")
    lower = name.lower()
    if lower == "host":
        return _HOST
    if lower in _NOT_SENT:
        return _SKIP
    if lower == "accept":
        return _ACCEPT
    if lower in ("idempotency-key", "x-idempotency-key"):
        return _IDEMPOTENCY
    return _SEND


def _injected(method: str, target: str, host: str, headers: dict[str, str]) -> str:
    """Which value broke the head (the slow path, only when one did)."""
    for name, value in (("request target", target), ("method", method), ("Host", host), *headers.items()):
        if any(c in str(value) for c in "\r\n\0"):
            return f"upstream request header {name!r} holds a line break or NUL; refused"
    return "upstream request head is malformed; refused"


class Decoder:
    """Incremental gzip/deflate decompression of a body (deflate with or without its zlib wrapper)."""

    __slots__ = ("_z", "encoding")

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._z: zlib._Decompress | None = None

    def feed(self, data: bytes) -> bytes:
        """The decompressed bytes of `data`; zlib.error if corrupt."""
        if not data:
            return b""
        z = self._z
        if z is None:
            wbits = _deflate_bits(data) if self.encoding == "deflate" else 16 + zlib.MAX_WBITS
            z = self._z = zlib.decompressobj(wbits)
        return z.decompress(data)

    def flush(self) -> bytes:
        """What is left at the end of the body."""
        return self._z.flush() if self._z is not None else b""


def decode_whole(data: bytes, encoding: str, limit: int) -> bytes:
    """The decompressed body; ReplyTooLarge past `limit` bytes, zlib.error if corrupt or cut short."""
    if not data:
        return data
    z = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding != "deflate" else _deflate_bits(data))
    out = z.decompress(data, limit + 1)
    if len(out) > limit:
        raise ReplyTooLarge()
    if not z.eof:
        raise zlib.error("the compressed body ended early")
    return out


def _deflate_bits(data: bytes) -> int:
    """`deflate` is meant to be zlib-wrapped, but some servers send it raw."""
    return zlib.MAX_WBITS if data[0] & 0x0F == 8 else -zlib.MAX_WBITS
