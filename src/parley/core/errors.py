"""Gateway errors and the error envelopes of the two APIs we speak."""

from __future__ import annotations

import orjson

# Anthropic error type for each HTTP status the gateway itself produces or maps.
ANTHROPIC_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# OpenAI error `type` for each Anthropic error type.
OPENAI_TYPE_BY_ANTHROPIC = {
    "invalid_request_error": "invalid_request_error",
    "authentication_error": "authentication_error",
    "billing_error": "insufficient_quota",
    "permission_error": "permission_error",
    "not_found_error": "not_found_error",
    "request_too_large": "invalid_request_error",
    "rate_limit_error": "rate_limit_error",
    "timeout_error": "timeout_error",
    "overloaded_error": "service_unavailable",
    "api_error": "api_error",
}


def anthropic_type_for_status(status: int) -> str:
    """The Anthropic `error.type` a status maps to (400 for unknown 4xx, api_error for 5xx)."""
    if status in ANTHROPIC_TYPE_BY_STATUS:
        return ANTHROPIC_TYPE_BY_STATUS[status]
    return "invalid_request_error" if status < 500 else "api_error"


class GatewayError(Exception):
    """An error parley produces itself; rendered in the envelope of the API that was called."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        param: str | None = None,
        code: str | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or anthropic_type_for_status(status)
        self.headers = headers or {}
        self.param = param
        self.code = code
        self.details = details  # Anthropic's `error.details` (`error_code`), which the SDK acts on

    def anthropic_body(self, request_id: str) -> bytes:
        return anthropic_error_body(self.type, self.message, request_id, self.details)

    def openai_body(self) -> bytes:
        return openai_error_body(
            self.message, OPENAI_TYPE_BY_ANTHROPIC.get(self.type, self.type), self.param, self.code
        )


def anthropic_error_body(
    type: str, message: str, request_id: str | None, details: dict[str, object] | None = None
) -> bytes:
    error: dict[str, object] = {"type": type, "message": message}
    if details is not None:
        error["details"] = details
    return orjson.dumps({"type": "error", "error": error, "request_id": request_id})


def openai_error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


def invalid_request(
    message: str,
    *,
    headers: dict[str, str] | None = None,
    param: str | None = None,
    code: str | None = None,
) -> GatewayError:
    return GatewayError(400, message, "invalid_request_error", headers=headers, param=param, code=code)


def thread_error(status: int, error_code: str, message: str, **details: object) -> GatewayError:
    """A thread rejection with the `error.details.error_code` the anthropic SDK recovers from
    (`thread_unsupported_request`: it sends the whole conversation; `thread_not_found` and the
    other replay codes: it replays the history under a new thread)."""
    kind = "not_found_error" if status == 404 else "invalid_request_error"
    return GatewayError(
        status, message, kind, param="thread", code=error_code, details={"error_code": error_code, **details}
    )


# --- Exceptions the Python SDK raises (parley.messages / parley.completion) -------------------------


class ParleyError(Exception):
    """Base of every exception the SDK raises."""


class APIConnectionError(ParleyError):
    """The backend could not be reached."""


class Timeout(APIConnectionError):
    """The backend did not answer in time."""


APITimeoutError = Timeout


class APIStatusError(ParleyError):
    """The backend (or parley) answered with an error status; `body` is the parsed error body."""

    def __init__(
        self, message: str, status_code: int, body: object = None, error_type: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body
        self.type = error_type


class BadRequestError(APIStatusError):
    pass


class AuthenticationError(APIStatusError):
    pass


class PermissionDeniedError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


class RequestTooLargeError(APIStatusError):
    pass


class RateLimitError(APIStatusError):
    pass


class InternalServerError(APIStatusError):
    pass


class OverloadedError(InternalServerError):
    pass


_BY_STATUS = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: RequestTooLargeError,
    429: RateLimitError,
    529: OverloadedError,
}


def status_error(
    status: int, message: str, body: object = None, error_type: str | None = None
) -> APIStatusError:
    """The typed exception for an error status."""
    cls = _BY_STATUS.get(status) or (InternalServerError if status >= 500 else APIStatusError)
    return cls(message, status, body, error_type)


def sdk_error(error: GatewayError) -> ParleyError:
    """The SDK exception for an error parley produced itself."""
    if error.status == 504:
        return Timeout(error.message)
    if error.status == 502 and error.message.startswith("upstream unreachable"):
        return APIConnectionError(error.message)
    return status_error(error.status, error.message, orjson.loads(error.anthropic_body("")), error.type)
