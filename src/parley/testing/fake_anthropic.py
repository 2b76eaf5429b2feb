"""The Anthropic side of the fake upstream.

A reply spec (all keys optional):
    {"api": "anthropic",                      only Anthropic-protocol requests take it
     "status": 200, "error": {"type", "message"}, "headers": {...},   an HTTP error when status >= 400
     "content": [blocks], "stop_reason": "end_turn", "stop_sequence": null, "usage": {...},
     "model": "...",                          else the requested model
     "delay": s,                              before the response starts
     "chunk_delay": s,                        between stream events
     "silence": s,                            a pause after the first content_block_start
     "stream_error": {"type", "message"}, "error_after": n,   an `event: error` after n events
     "disconnect_after": n,                   drop the connection after n events
     "raw": "...", "content_type": "..."}     send these bytes verbatim (and see fake_state.send_raw:
                                              raw_repeat, raw_chunks, endless, then)
Without a script the reply echoes the last user text.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import orjson
from aiohttp import web

from parley.core.anthropic_stream import message_events
from parley.core.sse import encode_event
from parley.core.tokens import count_request_tokens, text_tokens
from parley.providers.mock import last_user_text
from parley.testing.fake_state import RAW_KEYS, STATE, json_response, send_raw, sleep

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    app.router.add_get("/v1/models", models)


def error_body(type_: str, message: str) -> dict:
    return {
        "type": "error",
        "error": {"type": type_, "message": message},
        "request_id": "req_fake" + secrets.token_hex(8),
    }


def _check(request: web.Request, raw: bytes) -> dict[str, Any] | web.Response:
    """The request's JSON body, or the error response the real API gives for it."""
    if not request.headers.get("x-api-key") and not request.headers.get("authorization"):
        return json_response(error_body("authentication_error", "x-api-key header is required"), 401)
    if not request.headers.get("anthropic-version"):
        return json_response(
            error_body("invalid_request_error", "anthropic-version: header is required"), 400
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json_response(error_body("invalid_request_error", "invalid JSON body"), 400)
    if not isinstance(body, dict):
        return json_response(error_body("invalid_request_error", "body must be an object"), 400)
    problem = _search_result_problem(body)
    if problem is not None:
        return json_response(error_body("invalid_request_error", problem), 400)
    return body


def _search_result_problem(body: dict[str, Any]) -> str | None:
    """What the API says of a malformed `search_result` block (source, title, text-only content)."""
    messages = body.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else []):
        content = message.get("content") if isinstance(message, dict) else None
        for j, block in enumerate(content if isinstance(content, list) else []):
            if not isinstance(block, dict) or block.get("type") != "search_result":
                continue
            where = f"messages.{i}.content.{j}"
            if message.get("role") != "user":
                return f"{where}: search_result blocks are only allowed in user messages"
            for field in ("source", "title"):
                if not isinstance(block.get(field), str):
                    return f"{where}.{field}: Field required"
            inner = block.get("content")
            if not isinstance(inner, list) or not inner:
                return f"{where}.content: Field required"
            if not all(
                isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
                for b in inner
            ):
                return f"{where}.content: only text blocks are allowed"
    return None


async def count_tokens(request: web.Request) -> web.Response:
    raw, _ = await request.app[STATE].record(request)
    body = _check(request, raw)
    if isinstance(body, web.Response):
        return body
    if "max_tokens" in body:
        return json_response(
            error_body("invalid_request_error", "max_tokens: Extra inputs are not permitted"), 400
        )
    return json_response({"input_tokens": count_request_tokens(body)})


async def models(request: web.Request) -> web.Response:
    await request.app[STATE].record(request)
    data = [
        {
            "type": "model",
            "id": "claude-sonnet-4-5-20250929",
            "display_name": "Claude Sonnet 4.5",
            "created_at": "2025-09-29T00:00:00Z",
        }
    ]
    return json_response(
        {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[0]["id"]}
    )


async def messages(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    raw, _ = await state.record(request)
    body = _check(request, raw)
    if isinstance(body, web.Response):
        return body
    spec = state.next_reply("anthropic", body) or {}
    await sleep(spec.get("delay"))
    if RAW_KEYS & spec.keys():
        return await send_raw(request, spec)
    status = spec.get("status", 200)
    if status >= 400:
        err = spec.get("error") or {}
        return json_response(
            error_body(
                err.get("type", ERROR_TYPES.get(status, "api_error")), err.get("message", "scripted error")
            ),
            status,
            headers=spec.get("headers"),
        )
    message = build_message(body, spec)
    if not body.get("stream"):
        return json_response(message, headers=spec.get("headers"))
    return await stream_message(request, message, spec)


def build_message(body: dict, spec: dict) -> dict[str, Any]:
    content = spec.get("content")
    if content is None:
        content = [{"type": "text", "text": "Hello! You said: " + last_user_text(body, skip_textless=False)}]
    content = [_fill_ids(block) for block in content]
    output = sum(text_tokens(orjson.dumps(b).decode()) for b in content)
    limit = body.get("max_tokens")
    truncated = False
    if isinstance(limit, int) and 0 < limit < output and "usage" not in spec:
        truncated = True  # like the real API: never more output than max_tokens
        content = _truncate(content, limit)
        output = limit
    usage = {
        "input_tokens": count_request_tokens(body),
        "output_tokens": max(1, output),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    usage.update(spec.get("usage") or {})
    stop = spec.get("stop_reason") or (
        "max_tokens"
        if truncated
        else "tool_use"
        if any(b["type"] == "tool_use" for b in content)
        else "end_turn"
    )
    return {
        "id": "msg_fake" + secrets.token_hex(10),
        "type": "message",
        "role": "assistant",
        "model": spec.get("model", body.get("model")),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": spec.get("stop_sequence"),
        "usage": usage,
    }


def _truncate(content: list[dict], tokens: int) -> list[dict]:
    """The text of `content` cut to about `tokens` tokens (four characters each)."""
    budget, out = tokens * 4, []
    for block in content:
        if block.get("type") != "text" or budget <= 0:
            if budget > 0:
                out.append(block)
            continue
        out.append(dict(block, text=block["text"][:budget]))
        budget -= len(block["text"])
    return out


def _fill_ids(block: dict) -> dict:
    if block.get("type") == "tool_use" and "id" not in block:
        return dict(block, id="toolu_fake" + secrets.token_hex(10))
    if block.get("type") == "thinking" and "signature" not in block:
        return dict(block, signature="sig_" + secrets.token_hex(16))
    return block


async def stream_message(request: web.Request, message: dict, spec: dict) -> web.StreamResponse:
    state = request.app[STATE]
    response = web.StreamResponse(
        status=200,
        headers={
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            "request-id": "req_fake" + secrets.token_hex(8),
            **(spec.get("headers") or {}),
        },
    )
    await response.prepare(request)
    sent = 0
    try:
        for name, payload in message_events(message, spec.get("piece", 16)):
            if spec.get("disconnect_after") is not None and sent >= spec["disconnect_after"]:
                state.events.append({"disconnected_by_fake": True, "after": sent})
                if request.transport is not None:  # None once the client has gone
                    request.transport.close()
                return response
            if spec.get("error_after") is not None and sent >= spec["error_after"]:
                err = spec.get("stream_error") or {"type": "overloaded_error", "message": "Overloaded"}
                await response.write(encode_event("error", {"type": "error", "error": err}))
                break
            await response.write(encode_event(name, payload))
            sent += 1
            if name == "content_block_start" and spec.get("silence") and sent <= 3:
                await sleep(spec["silence"])
            await sleep(spec.get("chunk_delay"))
        await response.write_eof()
        state.events.append({"stream_completed": True, "events": sent})
    except (ConnectionResetError, asyncio.CancelledError, RuntimeError):
        state.events.append({"stream_aborted": True, "events": sent})
    return response
