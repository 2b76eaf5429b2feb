"""The OpenAI Chat Completions side of the fake upstream: `POST /v1/chat/completions`.

It checks what OpenAI checks that a translator can get wrong (a `Bearer` key; `tool` messages
answer the `tool_calls` of the assistant message right before them, and every call is answered;
tool message content is text), answers JSON or SSE (`data:` chunks, a `choices: []` usage chunk
when `stream_options.include_usage` is set, `data: [DONE]`), and records every request.

A reply spec, queued with /_fake/script (all keys optional):
    {"api": "openai",                          only OpenAI-protocol requests take it
     "match": {"model": m, "has_tools": b, "last_role": r},   only requests that fit take it
     "status": 200, "error": {"message", "type", "code", "param"}, "headers": {...},
     "error_body": {...},                      an error body sent verbatim (other servers' shapes)
     "content": "text", "refusal": "text",
     "reasoning": "text", "reasoning_field": "reasoning_content" | "reasoning",
     "tool_calls": [{"name", "arguments": "json text" | object, "id"?}],
     "finish_reason": "stop" | "length" | "tool_calls" | ...,   default from the content
     "stop_reason": "...",                     the matched stop string, reported as vLLM does
     "usage": {...}, "cached_tokens": n,       override or extend the computed usage
     "model": "...", "id": "chatcmpl-...",
     "delay": s, "chunk_delay": s, "piece": n (characters per streamed fragment, default 8),
     quirks of other servers:
     "no_usage": true                          never report usage (llama.cpp, Ollama)
     "whole_tool_calls": true                  each tool call arrives whole in one chunk
     "interleave_tool_calls": true             parallel calls' fragments alternate
     "no_done": true                           the stream ends without `data: [DONE]`
     "server": "llamacpp" | "vllm" | "ollama"  a local server's limits, usage and one token per
                                               chunk (testing/fake_servers.py)
     failures:
     "stream_error": {...}, "error_after": n   a `data: {"error": ...}` chunk after n chunks
     "disconnect_after": n                     drop the connection after n chunks
     "raw": "...", "content_type": "..."}      send these bytes verbatim (and see fake_state.send_raw:
                                               raw_repeat, raw_chunks, endless, then)
Without a script the reply echoes the last user text.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from typing import Any

import orjson
from aiohttp import web

from parley.core.sse import OPENAI_DONE_FRAME, encode_data
from parley.core.tokens import text_tokens
from parley.providers.mock import last_user_text
from parley.testing.fake_servers import FLAVOURS, generate
from parley.testing.fake_state import RAW_KEYS, STATE, json_response, send_raw, sleep

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_exceeded",
    500: "server_error",
    503: "server_error",
}


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)


def openai_error(
    message: str, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    raw, _ = await state.record(request)
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer ") or len(auth) <= 7:
        return json_response(
            openai_error(
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code=None,
            ),
            401,
        )
    return await answer(request, raw)


async def answer(request: web.Request, raw: bytes, deployment: str | None = None) -> web.StreamResponse:
    """Check and answer one Chat Completions body; `deployment` (Azure's, from the URL) stands for
    the body's model and adds Azure's content-filter annotations."""
    state = request.app[STATE]
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json_response(openai_error("We could not parse the JSON body of your request."), 400)
    if deployment and isinstance(body, dict):
        body.setdefault("model", deployment)
    problem = check_request(body)
    if problem is not None:
        return json_response(openai_error(problem[0], param=problem[1]), 400)
    spec = state.next_reply("openai", body) or {}
    await sleep(spec.get("delay"))
    if RAW_KEYS & spec.keys():
        return await send_raw(request, spec)
    status = spec.get("status", 200)
    if status >= 400:
        payload = spec.get("error_body")
        if payload is None:
            err = spec.get("error") or {}
            payload = openai_error(
                err.get("message", "scripted error"),
                err.get("type", ERROR_TYPES.get(status, "invalid_request_error")),
                err.get("param"),
                err.get("code"),
            )
        return json_response(payload, status, headers=spec.get("headers"))
    reply = Reply(body, spec)
    if not body.get("stream"):
        completion = reply.completion()
        if deployment is not None:
            completion["prompt_filter_results"] = AZURE_PROMPT_FILTER
            for choice in completion["choices"]:
                choice["content_filter_results"] = _azure_choice_filter(choice["finish_reason"])
        return json_response(completion, headers=spec.get("headers"))
    first = [{"id": "", "object": "", "created": 0, "model": "", "choices": []}] if deployment else []
    if first:  # Azure streams open with a chunk of prompt filter results and no choices
        first[0]["prompt_filter_results"] = AZURE_PROMPT_FILTER
    return await stream(request, reply, spec, first)


_SAFE = {"filtered": False, "severity": "safe"}
AZURE_PROMPT_FILTER = [
    {
        "prompt_index": 0,
        "content_filter_results": {k: _SAFE for k in ("hate", "self_harm", "sexual", "violence")},
    }
]


def _azure_choice_filter(finish: str | None) -> dict[str, Any]:
    if finish == "content_filter":
        return {"violence": {"filtered": True, "severity": "high"}}
    return {k: _SAFE for k in ("hate", "self_harm", "sexual", "violence")}


def check_request(body: Any) -> tuple[str, str | None] | None:
    """(message, param) for a request OpenAI would refuse with 400, else None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object.", None
    if not isinstance(body.get("model"), str):
        return "you must provide a model parameter", "model"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "[] is too short - 'messages'", "messages"
    open_calls: list[str] = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("system", "developer", "user", "assistant", "tool"):
            return f"Invalid value for 'messages[{i}].role'.", f"messages.[{i}].role"
        if role == "tool":
            if message.get("tool_call_id") not in open_calls:
                return (
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    f"messages.[{i}].role",
                )
            open_calls.remove(message["tool_call_id"])
            content = message.get("content")
            if not isinstance(content, str) and not (
                isinstance(content, list)
                and all(isinstance(p, dict) and p.get("type") == "text" for p in content)
            ):
                return (
                    f"Invalid 'messages[{i}].content': tool content must be text.",
                    f"messages.[{i}].content",
                )
            continue
        if open_calls:
            return (
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(open_calls)}",
                "messages",
            )
        if role == "assistant":
            open_calls = [c.get("id") for c in message.get("tool_calls") or ()]
    return None


class Reply:
    """One scripted (or echo) reply, rendered whole or as chunks."""

    def __init__(self, body: dict, spec: dict) -> None:
        self.body = body
        self.spec = spec
        self.id = spec.get("id") or "chatcmpl-" + secrets.token_hex(12)
        self.model = spec.get("model", body.get("model"))
        self.created = int(time.time())
        content = spec.get("content")
        if content is None and not spec.get("tool_calls") and not spec.get("refusal"):
            content = "Hello! You said: " + last_user_text(body, skip_textless=False)
        self.content: str | None = content
        self.reasoning: str = spec.get("reasoning") or ""
        self.reasoning_field = spec.get("reasoning_field", "reasoning_content")
        self.refusal: str | None = spec.get("refusal")
        self.calls = [
            {
                "id": c.get("id") or "call_" + secrets.token_hex(12),
                "name": c["name"],
                "arguments": c["arguments"]
                if isinstance(c.get("arguments"), str)
                else orjson.dumps(c.get("arguments") or {}).decode(),
            }
            for c in spec.get("tool_calls") or ()
        ]
        self.finish = spec.get("finish_reason") or ("tool_calls" if self.calls else "stop")
        self.flavour = FLAVOURS.get(spec.get("server", ""))
        self.pieces: list[str] | None = None  # the tokens a local-server flavour generated
        if self.flavour is not None and self.content:
            self.pieces, cut = generate(self.flavour, body, self.content)
            self.content = "".join(self.pieces)
            self.finish = "length" if cut else self.finish

    def usage(self) -> dict[str, Any]:
        prompt = text_tokens(orjson.dumps(self.body.get("messages")).decode()) + text_tokens(
            orjson.dumps(self.body.get("tools") or []).decode()
        )
        generated = (
            (self.content or "")
            + self.reasoning
            + (self.refusal or "")
            + "".join(c["name"] + c["arguments"] for c in self.calls)
        )
        cached = self.spec.get("cached_tokens", 0)
        completion = len(self.pieces) if self.pieces is not None else max(1, text_tokens(generated))
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": text_tokens(self.reasoning)},
        }
        usage.update(self.spec.get("usage") or {})
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return usage

    def completion(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content, "refusal": self.refusal}
        if self.reasoning:
            message[self.reasoning_field] = self.reasoning
        if self.calls:
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in self.calls
            ]
        choice = {"index": 0, "message": message, "finish_reason": self.finish, "logprobs": None}
        if "stop_reason" in self.spec:
            choice["stop_reason"] = self.spec["stop_reason"]
        out = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }
        if not self.spec.get("no_usage"):
            out["usage"] = self.usage()
        return out

    def chunks(self) -> Iterator[dict[str, Any]]:
        piece = self.spec.get("piece", 8)
        with_usage = bool((self.body.get("stream_options") or {}).get("include_usage")) and not self.spec.get(
            "no_usage"
        )
        if self.flavour is not None and not self.flavour.stream_usage:
            with_usage = False
        yield self._chunk({"role": "assistant", "content": ""}, with_usage)
        for field, text in (
            (self.reasoning_field, self.reasoning),
            ("content", self.content),
            ("refusal", self.refusal),
        ):
            parts = (
                self.pieces if field == "content" and self.pieces is not None else _split(text or "", piece)
            )
            for part in parts:
                yield self._chunk({field: part}, with_usage)
        for calls in self._call_fragments(piece):
            yield self._chunk({"tool_calls": calls}, with_usage)
        last = self._chunk({}, with_usage, finish=self.finish)
        if "stop_reason" in self.spec:
            last["choices"][0]["stop_reason"] = self.spec["stop_reason"]
        yield last
        if with_usage:
            yield {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": self.usage(),
            }

    def _call_fragments(self, piece: int) -> Iterator[list[dict]]:
        if self.spec.get("whole_tool_calls"):
            for i, c in enumerate(self.calls):
                yield [
                    {
                        "index": i,
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["arguments"]},
                    }
                ]
            return
        streams = []
        for i, c in enumerate(self.calls):
            first = {
                "index": i,
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": ""},
            }
            rest = [{"index": i, "function": {"arguments": p}} for p in _split(c["arguments"], piece)]
            streams.append([first, *rest])
        if self.spec.get("interleave_tool_calls"):
            while any(streams):
                for s in streams:
                    if s:
                        yield [s.pop(0)]
        else:
            for s in streams:
                for fragment in s:
                    yield [fragment]

    def _chunk(self, delta: dict, with_usage: bool, finish: str | None = None) -> dict[str, Any]:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        if with_usage:
            chunk["usage"] = None
        return chunk


async def stream(
    request: web.Request, reply: Reply, spec: dict, first: list[dict] | None = None
) -> web.StreamResponse:
    state = request.app[STATE]
    response = web.StreamResponse(
        status=200,
        headers={
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            "x-request-id": "req_" + secrets.token_hex(8),
            **(spec.get("headers") or {}),
        },
    )
    await response.prepare(request)
    sent = 0
    try:
        for chunk in [*(first or ()), *reply.chunks()]:
            if spec.get("disconnect_after") is not None and sent >= spec["disconnect_after"]:
                state.events.append({"disconnected_by_fake": True, "after": sent})
                if request.transport is not None:  # None once the client has gone
                    request.transport.close()
                return response
            if spec.get("error_after") is not None and sent >= spec["error_after"]:
                err = spec.get("stream_error") or {
                    "message": "The server had an error while processing your request.",
                    "type": "server_error",
                }
                await response.write(encode_data({"error": err}))
                await response.write_eof()
                state.events.append({"stream_error_sent": True, "after": sent})
                return response
            await response.write(encode_data(chunk))
            sent += 1
            await sleep(spec.get("chunk_delay"))
        if not spec.get("no_done"):
            await response.write(OPENAI_DONE_FRAME)
        await response.write_eof()
        state.events.append({"stream_completed": True, "events": sent})
    except (ConnectionResetError, asyncio.CancelledError, RuntimeError):
        state.events.append({"stream_aborted": True, "events": sent})
    return response


def _split(text: str, piece: int) -> list[str]:
    return [text[i : i + piece] for i in range(0, len(text), max(1, piece))]
