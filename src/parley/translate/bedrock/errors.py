"""Amazon Bedrock errors in Anthropic terms.

Bedrock names its error in the `x-amzn-errortype` header (`ThrottlingException:http://...`) with a
`{"message": ...}` body, and inside an event stream as an exception frame whose `:exception-type`
is the same name in camel case (`throttlingException`). Each maps to the status and Anthropic
error type a client of the Messages API expects; credential problems become 401 naming Bedrock.
"""

from __future__ import annotations

from typing import Any

import orjson

# Bedrock exception name (lower case) -> (status parley answers with, Anthropic error type)
ERRORS = {
    "validationexception": (400, "invalid_request_error"),
    "serializationexception": (400, "invalid_request_error"),
    "accessdeniedexception": (403, "permission_error"),
    "unrecognizedclientexception": (401, "authentication_error"),
    "invalidsignatureexception": (401, "authentication_error"),
    "incompletesignatureexception": (401, "authentication_error"),
    "missingauthenticationtokenexception": (401, "authentication_error"),
    "expiredtokenexception": (401, "authentication_error"),
    "resourcenotfoundexception": (404, "not_found_error"),
    "throttlingexception": (429, "rate_limit_error"),
    "servicequotaexceededexception": (429, "rate_limit_error"),
    "modelnotreadyexception": (429, "rate_limit_error"),
    "modeltimeoutexception": (504, "timeout_error"),
    "serviceunavailableexception": (529, "overloaded_error"),
    "internalserverexception": (500, "api_error"),
    "modelerrorexception": (502, "api_error"),
    "modelstreamerrorexception": (502, "api_error"),
}
_AUTH_STATUSES = (401, 403)


def error_name(header: str | None, body: Any) -> str:
    """The exception name from `x-amzn-errortype` (or the body's `__type`), e.g. ThrottlingException."""
    name = header or (body.get("__type") if isinstance(body, dict) else None) or ""
    return str(name).split(":", 1)[0].rsplit("#", 1)[-1]


def map_error(name: str, status: int, message: str | None) -> tuple[int, str, str]:
    """(status, Anthropic error type, message) for a Bedrock error."""
    mapped = ERRORS.get(name.lower())
    if mapped is None:
        mapped = (status, "invalid_request_error") if 400 <= status < 500 else (502, "api_error")
    status, kind = mapped
    text = message or name or "error"
    if kind == "authentication_error" or (kind == "permission_error" and status in _AUTH_STATUSES):
        text = f"Amazon Bedrock rejected the request ({name}): {text}"
    else:
        text = f"Amazon Bedrock {name}: {text}" if name else f"Amazon Bedrock: {text}"
    return status, kind, text


def error_from_reply(status: int, headers: dict[str, str], body: bytes | None) -> tuple[int, str, str]:
    """(status, Anthropic error type, message) for an HTTP error reply from Bedrock."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    message = None
    if isinstance(data, dict):
        message = data.get("message") or data.get("Message")
    if message is None and body:
        message = body[:200].decode("utf-8", "replace")
    return map_error(error_name(headers.get("x-amzn-errortype"), data), status, message)


def stream_error_event(error_type: str, message: str) -> tuple[str, dict[str, Any]]:
    return "error", {"type": "error", "error": {"type": error_type, "message": message}}
