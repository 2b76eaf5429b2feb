"""Google API errors (`{"error": {"code", "message", "status", "details"}}`) in Anthropic's terms.

Gemini (AI Studio and Vertex) and Vertex's own gateway in front of Claude answer errors in this
envelope. The status word decides the Anthropic type; an invalid API key (400 INVALID_ARGUMENT with
reason API_KEY_INVALID on AI Studio) is the 401 it means. Messages name the backend.
"""

from __future__ import annotations

from typing import Any

import orjson

from parley.core.errors import anthropic_error_body, anthropic_type_for_status

_BY_STATUS_WORD = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "UNAVAILABLE": 529,  # as the OpenAI path maps 503: Anthropic's overloaded status
    "DEADLINE_EXCEEDED": 504,
}
_AUTH_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "ACCESS_TOKEN_EXPIRED"})


def google_error_fields(status: int, body: Any) -> tuple[int, str, str]:
    """(status, Anthropic error type, message) for a Google error reply or stream chunk."""
    if isinstance(body, (bytes, bytearray)):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            text = bytes(body).decode("utf-8", "replace").strip()[:500]
            return status, anthropic_type_for_status(status), text or f"HTTP {status}"
    if isinstance(body, list) and body:  # non-SSE streams answer errors as a one-element array
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return status, anthropic_type_for_status(status), f"HTTP {status}"
    word = str(error.get("status") or "")
    out = _BY_STATUS_WORD.get(word, status if status >= 400 else 500)
    if _reasons(error) & _AUTH_REASONS:
        out = 401
    message = str(error.get("message") or word or f"HTTP {status}")
    if out == 499:
        out = 400
    return out, anthropic_type_for_status(out), message


def google_error_reply(backend: str, status: int, body: Any, request_id: str) -> tuple[int, str, str, bytes]:
    """(status, type, message, Anthropic error body) naming `backend` in the message."""
    out, kind, message = google_error_fields(status, body)
    message = f"{backend}: {message}"
    return out, kind, message, anthropic_error_body(kind, message, request_id)


def _reasons(error: dict[str, Any]) -> set[str]:
    details = error.get("details")
    items = details if isinstance(details, list) else []
    return {str(d.get("reason")) for d in items if isinstance(d, dict) and d.get("reason")}
