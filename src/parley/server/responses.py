"""Small response builders shared by the routes."""

from __future__ import annotations

from starlette.responses import Response

from parley.admin.common import JSONBytes
from parley.core.context import RequestContext
from parley.core.errors import GatewayError


def anthropic_error(ctx: RequestContext, error: GatewayError) -> Response:
    ctx.status = error.status
    ctx.error_type = error.type
    ctx.error_message = error.message
    headers = {"request-id": ctx.request_id, **error.headers}
    return JSONBytes(error.anthropic_body(ctx.request_id), status_code=error.status, headers=headers)
