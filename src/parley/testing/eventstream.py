"""AWS event-stream framing (`application/vnd.amazon.eventstream`), the encoding side.

A message is a prelude (total length, headers length, CRC32 of those 8 bytes), the headers (name
length u8, name, value type 7 = string, value length u16, value), the payload and a CRC32 of
everything before it. botocore ships only the decoder; the fake Bedrock server needs this half.
"""

from __future__ import annotations

import struct
import zlib

STRING = 7


def encode_headers(headers: dict[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += struct.pack(">B", len(raw_name)) + raw_name
        out += struct.pack(">BH", STRING, len(raw_value)) + raw_value
    return bytes(out)


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    raw_headers = encode_headers(headers)
    prelude = struct.pack(">II", 12 + len(raw_headers) + len(payload) + 4, len(raw_headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(event_type: str, payload: bytes) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, payload)


def exception(exception_type: str, payload: bytes) -> bytes:
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, payload)


def corrupt(frame: bytes) -> bytes:
    """The frame with its message CRC flipped (what a damaged connection delivers)."""
    return frame[:-4] + bytes(b ^ 0xFF for b in frame[-4:])
