"""Anthropic error replies -> OpenAI error envelopes `{"error": {message, type, param, code}}`.

The HTTP status is kept, except Anthropic's 529 `overloaded_error`, which OpenAI clients do not know:
it becomes 503 with a `retry-after`, so their SDKs still retry it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from parley.core.errors import OPENAI_TYPE_BY_ANTHROPIC, anthropic_type_for_status

RETRY_HEADERS = ("retry-after", "retry-after-ms", "x-should-retry")
OVERLOADED_RETRY_AFTER = "1"


def openai_error_type(anthropic_type: str) -> str:
    return OPENAI_TYPE_BY_ANTHROPIC.get(anthropic_type, anthropic_type)


def parse_anthropic_error(status: int, body: bytes | None) -> tuple[str, str]:
    """(Anthropic error type, message) from an error reply, whatever its shape."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return (
            str(error.get("type") or anthropic_type_for_status(status)),
            str(error.get("message") or f"upstream returned HTTP {status}"),
        )
    text = (body or b"").decode("utf-8", "replace").strip()[:500]
    return anthropic_type_for_status(status), text or f"upstream returned HTTP {status}"


def openai_error_reply(
    status: int, body: bytes | None, headers: Mapping[str, str]
) -> tuple[int, bytes, dict[str, str], str, str]:
    """(status, OpenAI body, headers to keep, Anthropic type, message) for an Anthropic error reply."""
    type_, message = parse_anthropic_error(status, body)
    kept = {k: headers[k] for k in RETRY_HEADERS if k in headers}
    if status == 529 or type_ == "overloaded_error":
        status = 503
        kept.setdefault("retry-after", OVERLOADED_RETRY_AFTER)
    envelope = {"error": {"message": message, "type": openai_error_type(type_), "param": None, "code": type_}}
    return status, orjson.dumps(envelope), kept, type_, message


def openai_stream_error(anthropic_type: str, message: str) -> dict[str, Any]:
    """The `data:` payload of a mid-stream error (the openai SDK raises APIError on it)."""
    return {
        "error": {
            "message": message,
            "type": openai_error_type(anthropic_type),
            "param": None,
            "code": anthropic_type,
        }
    }
