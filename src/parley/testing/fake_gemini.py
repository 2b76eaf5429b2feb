"""Gemini `generateContent` / `streamGenerateContent?alt=sse`, as the fake upstream serves it (for
the Gemini API and Vertex AI alike; `fake_google` routes and authenticates).

Checked as Gemini checks it: known fields only (camelCase or snake_case), roles `user` / `model`,
each part one kind of data, base64 thought signatures, one function response per call of the
turn before, and, for `gemini-3*` models, a thought signature this server issued on the first
function call of every model turn (else the 400 that breaks tool loops whose signatures are lost).

A reply spec (queued with /_fake/script, all keys optional):
    {"api": "gemini",
     "text": "...", "thinking": "...", "calls": [{"name", "args"}],   the answer (default: echo)
     "parts": [...],                   Gemini parts sent verbatim instead
     "finish_reason": "STOP",          or MAX_TOKENS, SAFETY, ...
     "prompt_blocked": "SAFETY",       no candidate, promptFeedback.blockReason
     "cached_tokens": n, "usage": {...}   usageMetadata (overrides)
     "status": 429, "error": {"status": "RESOURCE_EXHAUSTED", "message", "reason"},
     "piece": n, "chunk_delay": s, "error_after": n (a stream's `data: {"error"}` after n chunks)}
Thinking parts are sent when `thinkingConfig.includeThoughts` is set; signatures are issued for
models named `gemini-2.5*` and `gemini-3*`: on the first function call, else on the last part.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
from collections.abc import Iterator
from typing import Any

import orjson
from aiohttp import web

from parley.core.tokens import text_tokens
from parley.testing.fake_state import RAW_KEYS, STATE, json_response, send_raw, sleep

SIGNATURES = web.AppKey("signatures", set[bytes])
_TOP = {
    "contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings",
    "cachedContent", "labels", "model",
}  # fmt: skip
_GENERATION = {
    "maxOutputTokens", "temperature", "topP", "topK", "stopSequences", "candidateCount",
    "responseMimeType", "responseSchema", "responseJsonSchema", "thinkingConfig", "seed",
    "presencePenalty", "frequencyPenalty", "responseModalities", "responseLogprobs", "logprobs",
    "mediaResolution", "speechConfig",
}  # fmt: skip
_THINKING = {"thinkingBudget", "includeThoughts", "thinkingLevel"}
_DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
         "codeExecutionResult")  # fmt: skip
_PART_EXTRA = {"thought", "thoughtSignature", "videoMetadata", "partMetadata", "mediaResolution"}


def google_error(code: int, status: str, message: str, reason: str | None = None) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if reason:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
            }
        ]
    return json_response({"error": error}, code)


class Invalid(Exception):
    pass


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


def _fields(obj: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise Invalid(f"Invalid value at '{where}': expected an object")
    out = {}
    for key, value in obj.items():
        name = camel(key)
        if name not in allowed:
            raise Invalid(
                f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field."
            )
        out[name] = value
    return out


def check(body: Any, model: str, issued: set[bytes]) -> dict[str, Any]:
    """The request with camelCase names, or Invalid with Gemini's message."""
    body = _fields(body, _TOP, "request")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise Invalid("* GenerateContentRequest.contents: contents is not specified")
    if "generationConfig" in body:
        config = _fields(body["generationConfig"], _GENERATION, "generation_config")
        if "thinkingConfig" in config:
            config["thinkingConfig"] = _fields(
                config["thinkingConfig"], _THINKING, "generation_config.thinking_config"
            )
        body["generationConfig"] = config
    _check_tools(body.get("tools"))
    calls: list[str] = []  # the previous model turn's function calls
    for i, content in enumerate(contents):
        if not isinstance(content, dict) or content.get("role", "user") not in ("user", "model"):
            raise Invalid(f"Please use a valid role: user, model. (contents[{i}])")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise Invalid(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
        parts = [_part(p, f"contents[{i}].parts[{j}]") for j, p in enumerate(parts)]
        content["parts"] = parts
        responses = [p["functionResponse"] for p in parts if "functionResponse" in p]
        if responses and len(responses) != len(calls):
            raise Invalid(
                "Please ensure that the number of function response parts is equal to the number of "
                "function call parts of the function call turn."
            )
        if content.get("role") == "model":
            calls = [p["functionCall"].get("name") for p in parts if "functionCall" in p]
            _check_signature(parts, model, issued, i)
    return body


def _check_tools(tools: Any) -> None:
    for i, tool in enumerate(tools or ()):
        for j, decl in enumerate(
            (tool or {}).get("functionDeclarations") or (tool or {}).get("function_declarations") or ()
        ):
            where = f"tools[{i}].function_declarations[{j}]"
            if not isinstance(decl, dict) or not decl.get("name"):
                raise Invalid(
                    f"* GenerateContentRequest.{where}.name: [FIELD_INVALID] Invalid function name."
                )
            if "parameters" in decl and "parametersJsonSchema" in decl:
                raise Invalid(f"* {where}: parameters and parameters_json_schema are mutually exclusive")


def _part(part: Any, where: str) -> dict[str, Any]:
    part = _fields(part, set(_DATA) | _PART_EXTRA, where)
    kinds = [k for k in _DATA if k in part]
    if len(kinds) != 1:
        raise Invalid(f"Invalid value at '{where}': a part holds exactly one kind of data, got {kinds}")
    signature = part.get("thoughtSignature")
    if signature is not None:
        try:
            signature_bytes(signature)
        except (binascii.Error, ValueError, TypeError, AttributeError):
            raise Invalid(
                f"Invalid value at '{where}.thought_signature' (TYPE_BYTES), Base64 decoding failed"
            ) from None
    if "functionResponse" in part and not isinstance(part["functionResponse"].get("response", {}), dict):
        raise Invalid(f"Invalid value at '{where}.function_response.response': expected an object")
    return part


def signature_bytes(text: str) -> bytes:
    """Proto JSON bytes: standard or URL-safe base64, padding optional."""
    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _check_signature(parts: list[dict[str, Any]], model: str, issued: set[bytes], i: int) -> None:
    if not model.startswith("gemini-3"):
        return
    first = next((p for p in parts if "functionCall" in p), None)
    signature = first.get("thoughtSignature") if first is not None else None
    if first is not None and (signature is None or signature_bytes(signature) not in issued):
        name = first["functionCall"].get("name")
        raise Invalid(
            "Function call is missing a thought_signature in functionCall parts. This is required for "
            "tools to work correctly, and missing thought_signature may lead to degraded model "
            f"performance. Additional data, function call `default_api:{name}` , position {i + 1}. "
            "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
        )


# ----------------------------------------------------------------------------- replies


async def generate(request: web.Request, raw: bytes, model: str, stream: bool) -> web.StreamResponse:
    if stream and request.query.get("alt") != "sse":
        return google_error(400, "INVALID_ARGUMENT", "this fake streams with alt=sse only")
    try:
        body = check(orjson.loads(raw), model, request.app[SIGNATURES])
    except orjson.JSONDecodeError:
        return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
    except Invalid as e:
        return google_error(400, "INVALID_ARGUMENT", str(e))
    spec = request.app[STATE].next_reply("gemini", body) or {}
    await sleep(spec.get("delay"))
    if RAW_KEYS & spec.keys():
        return await send_raw(request, spec)
    if spec.get("status", 200) >= 400:
        err = spec.get("error") or {}
        code = spec["status"]
        return google_error(
            code, err.get("status", "UNKNOWN"), err.get("message", "scripted error"), err.get("reason")
        )
    reply = Reply(body, spec, model, request.app[SIGNATURES])
    if not stream:
        return json_response(reply.response())
    return await _stream(request, reply, spec)


def last_user_text(body: dict[str, Any]) -> str:
    for content in reversed(body["contents"]):
        if content.get("role", "user") == "user":
            texts = [p["text"] for p in content["parts"] if "text" in p]
            if texts:
                return " ".join(texts)
    return ""


class Reply:
    def __init__(self, body: dict[str, Any], spec: dict[str, Any], model: str, issued: set[bytes]) -> None:
        self.body, self.spec, self.model = body, spec, model
        config = body.get("generationConfig") or {}
        self.include_thoughts = bool((config.get("thinkingConfig") or {}).get("includeThoughts"))
        self.id = secrets.token_urlsafe(12)
        self.parts = self._parts(issued)

    def _parts(self, issued: set[bytes]) -> list[dict[str, Any]]:
        spec = self.spec
        if "parts" in spec:
            return [dict(p) for p in spec["parts"]]
        parts: list[dict[str, Any]] = []
        if spec.get("thinking") and self.include_thoughts:
            parts.append({"text": spec["thinking"], "thought": True})
        text = spec.get("text")
        if text is None and not spec.get("calls"):
            text = "Hello! You said: " + last_user_text(self.body)
        if text:
            parts.append({"text": text})
        parts.extend(
            {"functionCall": {"name": c["name"], "args": c.get("args", {})}} for c in spec.get("calls", ())
        )
        if parts and self.model.startswith(("gemini-2.5", "gemini-3")):
            signature = secrets.token_bytes(48)
            issued.add(signature)
            target = next((p for p in parts if "functionCall" in p), parts[-1])
            target["thoughtSignature"] = base64.b64encode(signature).decode()
        return parts

    @property
    def finish(self) -> str:
        return self.spec.get("finish_reason", "STOP")

    def usage(self) -> dict[str, Any]:
        prompt = text_tokens(
            orjson.dumps([self.body["contents"], self.body.get("systemInstruction")]).decode()
        )
        answer = sum(text_tokens(orjson.dumps(p).decode()) for p in self.parts if not p.get("thought"))
        thoughts = text_tokens(self.spec.get("thinking") or "")
        usage: dict[str, Any] = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": answer,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
        }
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        if self.spec.get("cached_tokens"):
            usage["cachedContentTokenCount"] = self.spec["cached_tokens"]
        usage.update(self.spec.get("usage") or {})
        usage["totalTokenCount"] = (
            usage["promptTokenCount"] + usage["candidatesTokenCount"] + usage.get("thoughtsTokenCount", 0)
        )
        return usage

    def response(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "usageMetadata": self.usage(),
            "modelVersion": self.model,
            "responseId": self.id,
        }
        if self.spec.get("prompt_blocked"):
            out["promptFeedback"] = {"blockReason": self.spec["prompt_blocked"]}
            return out
        candidate = {
            "content": {"role": "model", "parts": self.parts},
            "finishReason": self.finish,
            "index": 0,
        }
        out["candidates"] = [candidate]
        return out

    def chunks(self) -> Iterator[dict[str, Any]]:
        """Streamed pieces: text split every `piece` characters, calls whole, signatures on the part
        they belong to (a text's on a last empty part), finish reason and full usage on the last."""
        piece = self.spec.get("piece", 12)
        usage = self.usage()
        partial = {
            "promptTokenCount": usage["promptTokenCount"],
            "totalTokenCount": usage["promptTokenCount"],
        }
        pieces: list[dict[str, Any]] = []
        for part in self.parts:
            if "text" in part:
                text = part["text"]
                for k in range(0, max(1, len(text)), piece):
                    fragment = {"text": text[k : k + piece]}
                    if part.get("thought"):
                        fragment["thought"] = True
                    pieces.append(fragment)
                if part.get("thoughtSignature"):
                    tail = {"text": "", "thoughtSignature": part["thoughtSignature"]}
                    pieces.append(dict(tail, thought=True) if part.get("thought") else tail)
            else:
                pieces.append(part)
        if self.spec.get("prompt_blocked"):
            yield self.response()
            return
        for n, part in enumerate(pieces):
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": [part]}, "index": 0}
            last = n == len(pieces) - 1
            if last:
                candidate["finishReason"] = self.finish
            yield {
                "candidates": [candidate],
                "usageMetadata": usage if last else partial,
                "modelVersion": self.model,
                "responseId": self.id,
            }


async def _stream(request: web.Request, reply: Reply, spec: dict[str, Any]) -> web.StreamResponse:
    state = request.app[STATE]
    response = web.StreamResponse(status=200, headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    sent = 0
    try:
        for chunk in reply.chunks():
            if spec.get("error_after") is not None and sent >= spec["error_after"]:
                error = {
                    "code": 503,
                    "message": "The model is overloaded. Please try again later.",
                    "status": "UNAVAILABLE",
                }
                await response.write(b"data: " + orjson.dumps({"error": error}) + b"\r\n\r\n")
                break
            await response.write(b"data: " + orjson.dumps(chunk) + b"\r\n\r\n")
            sent += 1
            await sleep(spec.get("chunk_delay"))
        await response.write_eof()
        state.events.append({"stream_completed": True, "events": sent})
    except (ConnectionResetError, asyncio.CancelledError, RuntimeError):
        state.events.append({"stream_aborted": True, "events": sent})
    return response
