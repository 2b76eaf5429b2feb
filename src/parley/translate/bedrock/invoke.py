"""Anthropic Messages request -> the InvokeModel body Bedrock takes for Claude models.

The body is the Messages body itself with `model` and `stream` taken out (the model is in the URL,
streaming is the operation), `anthropic_version: bedrock-2023-05-31` added and the client's betas
as `anthropic_beta`. Everything else, `cache_control` included, is sent as the client wrote it.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import orjson

BEDROCK_VERSION = "bedrock-2023-05-31"


def invoke_body(body: dict[str, Any], betas: list[str]) -> dict[str, Any]:
    out = {k: v for k, v in body.items() if k not in ("model", "stream")}
    out["anthropic_version"] = BEDROCK_VERSION
    if betas:
        out["anthropic_beta"] = betas
    return out


def split_betas(header: str | None) -> list[str]:
    return [b.strip() for b in (header or "").split(",") if b.strip()]


def model_path(model_id: str, operation: str) -> str:
    """`/model/{modelId}/{operation}`, the id (or ARN) percent-encoded as one path segment."""
    return f"/model/{quote(model_id, safe='')}/{operation}"


def count_tokens_input(invoke: dict[str, Any] | None, converse: dict[str, Any] | None) -> bytes:
    """The CountTokens body for an InvokeModel body (blob: base64 of its JSON) or a Converse one."""
    if invoke is not None:
        invoke = dict(invoke)
        invoke.setdefault("max_tokens", 1)  # an InvokeModel body needs one; it does not count
        blob = base64.b64encode(orjson.dumps(invoke)).decode()
        return orjson.dumps({"input": {"invokeModel": {"body": blob}}})
    fields = ("messages", "system", "toolConfig", "additionalModelRequestFields")
    converse = {k: v for k, v in (converse or {}).items() if k in fields}
    return orjson.dumps({"input": {"converse": converse}})
