"""AWS event-stream frames for the fake Bedrock server: events, exceptions and damaged frames.

The encoding itself is parley's (`parley.translate.eventstream`, checked against botocore's decoder).
"""

from __future__ import annotations

from parley.translate.eventstream import encode_message

__all__ = ["corrupt", "encode_message", "event", "exception"]


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
