"""OpenAI-compatible error replies -> Anthropic error status, envelope and headers (§8.5).

The upstream's message text is kept (Claude Code matches on wording such as "prompt is too
long"), `retry-after` headers pass through, and the many shapes servers use are understood:
OpenAI's `{"error": {...}}`, Ollama's `{"error": "text"}`, vLLM's top-level `{"message": ...}`,
FastAPI's `{"detail": ...}` and plain text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from parley.core.errors import anthropic_error_body

# upstream status -> (status the client sees, Anthropic error type)
_BY_STATUS = {
    400: (400, "invalid_request_error"),
    401: (401, "authentication_error"),
    402: (402, "billing_error"),
    403: (403, "permission_error"),
    404: (404, "not_found_error"),
    408: (408, "timeout_error"),
    409: (409, "invalid_request_error"),
    413: (413, "request_too_large"),
    422: (400, "invalid_request_error"),
    429: (429, "rate_limit_error"),
    500: (500, "api_error"),
    502: (502, "api_error"),
    503: (529, "overloaded_error"),
    504: (504, "timeout_error"),
}
# OpenAI error `type`/`code` strings -> Anthropic error type (for errors without a status).
_BY_NAME = {
    "invalid_request_error": "invalid_request_error",
    "authentication_error": "authentication_error",
    "invalid_api_key": "authentication_error",
    "permission_error": "permission_error",
    "not_found_error": "not_found_error",
    "model_not_found": "not_found_error",
    "rate_limit_error": "rate_limit_error",
    "rate_limit_exceeded": "rate_limit_error",
    "insufficient_quota": "billing_error",
    "server_error": "api_error",
    "api_error": "api_error",
    "timeout": "timeout_error",
    "timeout_error": "timeout_error",
    "service_unavailable": "overloaded_error",
    "overloaded": "overloaded_error",
    "overloaded_error": "overloaded_error",
    "context_length_exceeded": "invalid_request_error",
}
_STATUS_BY_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "timeout_error": 504,
    "overloaded_error": 529,
    "api_error": 500,
}
_PASS_HEADERS = ("retry-after", "retry-after-ms", "x-should-retry")


def error_fields(body: Any) -> tuple[str, str | None, str | None]:
    """(message, OpenAI type, OpenAI code) from any error body shape."""
    if isinstance(body, (bytes, bytearray)):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body.decode("utf-8", "replace").strip()[:2000], None, None
    if isinstance(body, str):
        return body, None, None
    if not isinstance(body, dict):
        return "", None, None
    error = body.get("error", body)
    if isinstance(error, str):
        return error, body.get("type"), None
    if not isinstance(error, dict):
        return str(error), None, None
    message = error.get("message") or error.get("detail") or body.get("detail") or ""
    if not isinstance(message, str):
        message = orjson.dumps(message).decode()
    code = error.get("code")
    return message, _str(error.get("type")), _str(code)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def anthropic_type(status: int | None, openai_type: str | None, code: str | None) -> tuple[int, str]:
    """(status, Anthropic error type) for an upstream error."""
    if code == "insufficient_quota":
        return 402, "billing_error"
    if status is not None:
        if status in _BY_STATUS:
            return _BY_STATUS[status]
        return (status, "invalid_request_error") if status < 500 else (500, "api_error")
    name = _BY_NAME.get(code or "") or _BY_NAME.get(openai_type or "") or "api_error"
    return _STATUS_BY_TYPE[name], name


def _message(message: str, code: str | None, status: int) -> str:
    if code == "context_length_exceeded" and "prompt is too long" not in message:
        return "prompt is too long: " + message  # the wording Anthropic clients act on
    return message or f"upstream returned HTTP {status}"


def translate_error(
    status: int, body: bytes | None, headers: Mapping[str, str], request_id: str
) -> tuple[int, bytes, dict[str, str]]:
    """An OpenAI-compatible error reply as (status, Anthropic error body, headers to send)."""
    message, openai_type, code = error_fields(body or b"")
    out_status, kind = anthropic_type(status, openai_type, code)
    out_headers = {k: headers[k] for k in _PASS_HEADERS if k in headers}
    out_headers["content-type"] = "application/json"
    return out_status, anthropic_error_body(kind, _message(message, code, status), request_id), out_headers


def stream_error_payload(error: Any) -> dict[str, Any]:
    """The `event: error` payload for a mid-stream `data: {"error": ...}` chunk."""
    message, openai_type, code = error_fields({"error": error})
    status = error.get("code") if isinstance(error, dict) and isinstance(error.get("code"), int) else None
    out_status, kind = anthropic_type(status, openai_type, code)
    return {"type": "error", "error": {"type": kind, "message": _message(message, code, out_status)}}
