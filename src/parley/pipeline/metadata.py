"""Who a request is for and how it is tagged: end user, session and tags, from headers and body.

End user, first match wins: header `x-parley-end-user`, `litellm_metadata.user`,
`metadata.user_id` (Claude Code's JSON string: `account_uuid` when non-empty, else `device_id`;
its `session_id` becomes the session), OpenAI `user`. Tags: `litellm_metadata.tags` and the
comma-separated header `x-parley-tags`. Session: header `x-claude-code-session-id`, else the one in
`metadata.user_id`. Claude Code's version and entrypoint: its attribution line in `system`
(`x-anthropic-billing-header: cc_version=...; cc_entrypoint=...;`).
`litellm_metadata` is removed so the backend never sees it, and kept in
`ctx.litellm_metadata` for other hooks (e.g. the response cache's per-request controls).
"""

from __future__ import annotations

from typing import Any

import orjson

from parley.core import claude_code
from parley.core.context import RequestContext


def apply_request_metadata(
    ctx: RequestContext, body: dict[str, Any] | None, *, gateway_cache_controls: bool = False
) -> None:
    """Fill end user, session and tags; take `litellm_metadata` (and, on the Messages API, the
    gateway-only top-level `cache` controls) out of the body."""
    headers = ctx.headers
    header_tags = headers.get("x-parley-tags")
    tags = [t.strip() for t in header_tags.split(",") if t.strip()] if header_tags else []
    end_user = headers.get("x-parley-end-user") or None
    session = headers.get("x-claude-code-session-id") or None
    if isinstance(body, dict):
        meta = body.pop("litellm_metadata", None)
        if meta is not None:
            ctx.body_changed = True
            ctx.litellm_metadata = meta
        if gateway_cache_controls and "cache" in body:  # LiteLLM's cache controls: never sent upstream
            ctx.cache_controls = body.pop("cache")
            ctx.body_changed = True
        if isinstance(meta, dict):
            tags.extend(str(t) for t in meta.get("tags") or () if t)
            end_user = end_user or _str(meta.get("user"))
        metadata = body.get("metadata")
        if isinstance(metadata, dict):
            person, session_from_id = parse_user_id(metadata.get("user_id"))
            end_user = end_user or person
            session = session or session_from_id
        end_user = end_user or _str(body.get("user"))
        system = body.get("system")
        line = claude_code.find_line(system) if system is not None else None
        if line is not None:
            ctx.cc_version = line.version[:64] if line.version else None
            ctx.cc_entrypoint = line.entrypoint[:64] if line.entrypoint else None
    ctx.end_user = end_user[:255] if end_user else None
    ctx.session_id = session[:255] if session else None
    ctx.tags = list(dict.fromkeys(tag[:255] for tag in tags)) if tags else []


def parse_user_id(user_id: Any) -> tuple[str | None, str | None]:
    """(end user, session) from `metadata.user_id`, understanding Claude Code's formats."""
    if not isinstance(user_id, str) or not user_id:
        return None, None
    if user_id.startswith("{"):
        try:
            data = orjson.loads(user_id)
        except orjson.JSONDecodeError:
            return user_id, None
        if isinstance(data, dict):
            person = _str(data.get("account_uuid")) or _str(data.get("device_id"))
            return person, _str(data.get("session_id"))
    if user_id.startswith("user_") and "_session_" in user_id:  # older Claude Code format
        head, _, session = user_id.partition("_session_")
        account = head.partition("_account_")[2]
        return account or head, session or None
    return user_id, None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
