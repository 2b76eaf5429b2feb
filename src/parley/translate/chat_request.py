"""OpenAI Chat Completions request -> Anthropic Messages request (pure; no I/O).

`to_anthropic(body, upstream_model)` returns the Anthropic body plus a `ChatPlan` that the reply
translators need (stream options, the JSON-output tool, betas to add, fields that were dropped).
Anything the backend cannot express raises `GatewayError(400)` with the OpenAI `param` named.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from parley.core.errors import GatewayError, invalid_request

DEFAULT_MAX_TOKENS = 4096
JSON_TOOL = "json_output"
# reasoning_effort -> thinking budget_tokens ("none" turns thinking off)
EFFORT_BUDGET = {"minimal": 1024, "low": 1024, "medium": 2048, "high": 4096, "xhigh": 8192, "max": 16384}
# Anthropic-only request fields a client may send through the OpenAI SDK's `extra_body`.
PASS_THROUGH = (
    "top_k",
    "output_config",
    "cache_control",
    "container",
    "mcp_servers",
    "context_management",
    "inference_geo",
    "speed",
)
# OpenAI fields with no Anthropic counterpart: ignored, reported in `x-parley-dropped`.
IGNORED = frozenset(
    {
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "seed",
        "store",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "verbosity",
        "prediction",
        "web_search_options",
        "service_tier",
        "metadata",
        "moderation",
        "safety_identifier",
    }
)
HANDLED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "stop",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "functions",
        "function_call",
        "response_format",
        "reasoning_effort",
        "thinking",
        "user",
        "extra_headers",
        "modalities",
        "audio",
    }
)
_ANTHROPIC_TOOL_TYPE = re.compile(r"^[a-z_]+_\d{8}$")
_DATA_URL = re.compile(r"^data:([\w.+/-]+)?((?:;[\w.+-]+=[^;,]*)*)(;base64)?,(.*)$", re.S)
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


@dataclass(slots=True)
class ChatPlan:
    """What the reply side needs to know about the translated request."""

    model: str  # as the client asked
    stream: bool = False
    include_usage: bool = False
    json_tool: str | None = None  # a forced tool standing in for response_format
    betas: list[str] = field(default_factory=list)  # anthropic-beta values the request needs
    headers: dict[str, str] = field(default_factory=dict)  # body `extra_headers`
    dropped: list[str] = field(default_factory=list)
    created: int = field(default_factory=lambda: int(time.time()))


def to_anthropic(
    body: dict[str, Any], upstream_model: str, *, native_json: bool = True
) -> tuple[dict[str, Any], ChatPlan]:
    """Translate a Chat Completions body; `native_json` selects output_config over a forced tool."""
    plan = ChatPlan(model=body.get("model") or upstream_model, stream=body.get("stream") is True)
    _check_unsupported(body)
    options = body.get("stream_options")
    plan.include_usage = plan.stream and isinstance(options, dict) and options.get("include_usage") is True
    system, messages = convert_messages(body["messages"])
    out: dict[str, Any] = {"model": upstream_model, "messages": messages}
    if system:
        out["system"] = system
    out["max_tokens"] = _max_tokens(body)
    for name in PASS_THROUGH:
        if body.get(name) is not None:
            out[name] = body[name]
    _sampling(body, out, plan)
    _tools(body, out, plan)
    _response_format(body, out, plan, native_json)
    _thinking(body, out)
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if plan.stream:
        out["stream"] = True
    headers = body.get("extra_headers")
    if isinstance(headers, dict):
        plan.headers = {str(k).lower(): str(v) for k, v in headers.items()}
    plan.dropped = sorted(k for k in body if k in IGNORED or (k not in HANDLED and k not in PASS_THROUGH))
    return out, plan


def _check_unsupported(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise invalid_request(
            "n: only n=1 is supported by Anthropic models; send separate requests for more choices", param="n"
        )
    if body.get("audio") is not None or "audio" in (body.get("modalities") or ()):
        raise invalid_request("audio output is not supported by Anthropic models", param="modalities")


def _max_tokens(body: dict[str, Any]) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise invalid_request(f"{name}: Input should be a valid non-negative integer", param=name)
            return value
    budget = _budget(body)
    return (
        DEFAULT_MAX_TOKENS if budget is None or budget < DEFAULT_MAX_TOKENS else budget + DEFAULT_MAX_TOKENS
    )


def _sampling(body: dict[str, Any], out: dict[str, Any], plan: ChatPlan) -> None:
    temperature = body.get("temperature")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        out["temperature"] = min(float(temperature), 1.0)  # Anthropic's range is 0-1, OpenAI's 0-2
    if isinstance(body.get("top_p"), (int, float)) and not isinstance(body["top_p"], bool):
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = [s for s in stop if isinstance(s, str)]


# ---------------------------------------------------------------- thinking and structured output


def _budget(body: dict[str, Any]) -> int | None:
    thinking = body.get("thinking")
    if isinstance(thinking, dict):
        budget = thinking.get("budget_tokens")
        return budget if isinstance(budget, int) and thinking.get("type") == "enabled" else None
    return EFFORT_BUDGET.get(body.get("reasoning_effort", ""))


def _thinking(body: dict[str, Any], out: dict[str, Any]) -> None:
    thinking = body.get("thinking")
    if isinstance(thinking, dict):
        out["thinking"] = thinking
        return
    effort = body.get("reasoning_effort")
    if effort is None or effort == "none":
        return
    if effort not in EFFORT_BUDGET:
        raise invalid_request(f"reasoning_effort: unknown value {effort!r}", param="reasoning_effort")
    out["thinking"] = {"type": "enabled", "budget_tokens": EFFORT_BUDGET[effort]}


def _response_format(body: dict[str, Any], out: dict[str, Any], plan: ChatPlan, native: bool) -> None:
    fmt = body.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return
    kind = fmt["type"]
    if kind == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema") or {"type": "object"}
        name = spec.get("name") or JSON_TOOL
        description = spec.get("description")
    elif kind == "json_object":
        schema, name, description, native = {"type": "object"}, JSON_TOOL, None, False
    else:
        raise invalid_request(f"response_format.type: unsupported value {kind!r}", param="response_format")
    if native:
        config = dict(out.get("output_config") or {})
        config["format"] = {"type": "json_schema", "schema": schema}
        out["output_config"] = config
        return
    tool: dict[str, Any] = {
        "name": name,
        "input_schema": _object_schema(schema),
        "description": description or "Respond with the final answer as this tool's input.",
    }
    tools = out.setdefault("tools", [])
    if not tools:
        out["tool_choice"] = {"type": "tool", "name": name}
    tools.append(tool)
    plan.json_tool = name


def _object_schema(schema: Any) -> dict[str, Any]:
    if not isinstance(schema, dict):
        return {"type": "object", "properties": {}}
    if schema.get("type") == "object":
        return schema
    if "type" not in schema and "properties" in schema:
        return dict(schema, type="object")
    # a non-object answer is wrapped: the reply unwraps nothing, the client sees {"value": ...}
    return {"type": "object", "properties": {"value": schema}, "required": ["value"]}


# ---------------------------------------------------------------------------------------- tools


def _tools(body: dict[str, Any], out: dict[str, Any], plan: ChatPlan) -> None:
    raw_tools = body.get("tools")
    if raw_tools is None and body.get("functions"):
        raw_tools = [{"type": "function", "function": f} for f in body["functions"]]
    choice = body.get("tool_choice", body.get("function_call"))
    if not raw_tools:
        return
    if not isinstance(raw_tools, list):
        raise invalid_request("tools: Input should be a valid list", param="tools")
    tools = [_tool(t, i, plan) for i, t in enumerate(raw_tools)]
    tool_choice, allowed = _tool_choice(choice)
    if allowed is not None:
        tools = [t for t in tools if t.get("name") in allowed]
    out["tools"] = tools
    if tool_choice is not None and body.get("parallel_tool_calls") is False and tool_choice["type"] != "none":
        tool_choice["disable_parallel_tool_use"] = True
    elif tool_choice is None and body.get("parallel_tool_calls") is False:
        tool_choice = {"type": "auto", "disable_parallel_tool_use": True}
    if tool_choice is not None:
        out["tool_choice"] = tool_choice


def _tool(tool: Any, i: int, plan: ChatPlan) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise invalid_request(f"tools[{i}]: Input should be an object", param=f"tools[{i}]")
    kind = tool.get("type", "function")
    fn = v if isinstance(v := tool.get("function"), dict) else {}
    if kind == "function":
        if not isinstance(fn.get("name"), str):
            raise invalid_request(
                f"tools[{i}].function.name: Field required", param=f"tools[{i}].function.name"
            )
        out: dict[str, Any] = {"name": fn["name"], "input_schema": _object_schema(fn.get("parameters"))}
        if fn.get("description"):
            out["description"] = fn["description"]
        cache = tool.get("cache_control") or fn.get("cache_control")
        if cache:
            out["cache_control"] = cache
        return out
    if isinstance(kind, str) and _ANTHROPIC_TOOL_TYPE.match(kind):
        return _anthropic_tool(tool, kind, fn, plan)
    raise invalid_request(
        f"tools[{i}].type: {kind!r} tools are not supported by Anthropic models", param=f"tools[{i}].type"
    )


def _anthropic_tool(tool: dict[str, Any], kind: str, fn: dict[str, Any], plan: ChatPlan) -> dict[str, Any]:
    """An Anthropic-defined tool (computer_20241022, bash_20250124, web_search_...), in either form."""
    out = {k: v for k, v in tool.items() if k != "function"}
    params = v if isinstance(v := fn.get("parameters"), dict) else {}
    out.update({k: v for k, v in params.items() if k not in ("type", "properties", "required")})
    name = fn.get("name") or tool.get("name") or kind.rsplit("_", 1)[0]
    out["name"] = "str_replace_editor" if name == "text_editor" else name
    family, date = kind.rsplit("_", 1)
    if family == "computer" or date == "20241022":
        beta = f"computer-use-{date[:4]}-{date[4:6]}-{date[6:]}"
        if beta not in plan.betas:
            plan.betas.append(beta)
    return out


def _tool_choice(choice: Any) -> tuple[dict[str, Any] | None, set[Any] | None]:
    if choice is None:
        return None, None
    if choice in ("auto", "none"):
        return {"type": choice}, None
    if choice == "required":
        return {"type": "any"}, None
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "function" or (kind is None and "name" in choice):
            name = (choice.get("function") or {}).get("name") or choice.get("name")
            if isinstance(name, str):
                return {"type": "tool", "name": name}, None
        if kind == "allowed_tools":
            allowed = choice.get("allowed_tools") or {}
            names = {
                (t.get("function") or {}).get("name") or t.get("name")
                for t in allowed.get("tools") or ()
                if isinstance(t, dict)
            }
            return {"type": "any" if allowed.get("mode") == "required" else "auto"}, names
    raise invalid_request(
        f"tool_choice: unsupported value {orjson.dumps(choice).decode()}", param="tool_choice"
    )


# ------------------------------------------------------------------------------------- messages


def convert_messages(messages: Any) -> tuple[str | list[dict[str, Any]], list[dict[str, Any]]]:
    """(Anthropic system, Anthropic messages) from OpenAI messages; same-role turns are merged."""
    if not isinstance(messages, list):
        raise invalid_request("messages: Input should be a valid list", param="messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    pending_fn: dict[str, str] = {}  # legacy function_call name -> synthetic tool_use id
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid_request(f"messages[{i}]: Input should be an object", param=f"messages[{i}]")
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_with_cache(_text_blocks(message.get("content"), i), message))
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), i)
        elif role == "assistant":
            blocks = _assistant_blocks(message, i, pending_fn)
        elif role == "tool":
            blocks = [_tool_result(message, message.get("tool_call_id"), i)]
            role = "user"
        elif role == "function":
            call_id = pending_fn.pop(message.get("name") or "", None) or f"call_fn_{i}"
            blocks = [_tool_result(message, call_id, i)]
            role = "user"
        else:
            raise invalid_request(f"messages[{i}].role: unknown role {role!r}", param=f"messages[{i}].role")
        blocks = _with_cache(blocks, message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:  # a lone plain text block reads better (and caches the same) as a string
        content = turn["content"]
        if len(content) == 1 and content[0].get("type") == "text" and set(content[0]) == {"type", "text"}:
            turn["content"] = content[0]["text"]
    return _system(system), turns


def _system(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if not blocks:
        return ""
    if all(set(b) == {"type", "text"} for b in blocks):
        return "\n\n".join(b["text"] for b in blocks)
    return blocks


def _with_cache(blocks: list[dict[str, Any]], message: dict[str, Any]) -> list[dict[str, Any]]:
    """A message-level `cache_control` marks the message's last block."""
    cache = message.get("cache_control")
    if cache and blocks and blocks[-1].get("type") not in ("thinking", "redacted_thinking"):
        blocks[-1] = dict(blocks[-1], cache_control=cache)
    return blocks


def _text_blocks(content: Any, i: int) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise invalid_request(
            f"messages[{i}].content: Input should be a string or a list of parts",
            param=f"messages[{i}].content",
        )
    blocks = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
            raise invalid_request(
                f"messages[{i}].content[{j}]: only text parts are allowed here",
                param=f"messages[{i}].content[{j}]",
            )
        text = part.get("text") if part["type"] == "text" else part.get("refusal")
        if text:
            blocks.append(_cached({"type": "text", "text": text}, part))
    return blocks


def _cached(block: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """Carry a part's `cache_control` (or OpenAI's `prompt_cache_breakpoint`) onto `block`."""
    cache = part.get("cache_control")
    if cache is None and isinstance(part.get("prompt_cache_breakpoint"), dict):
        ttl = part["prompt_cache_breakpoint"].get("ttl")
        cache = {"type": "ephemeral", "ttl": "1h"} if ttl == "12h" else {"type": "ephemeral"}
    if cache:
        block["cache_control"] = cache
    return block


def _user_blocks(content: Any, i: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise invalid_request(
            f"messages[{i}].content: Field required (a string or a list of parts)",
            param=f"messages[{i}].content",
        )
    return [_user_part(part, i, j) for j, part in enumerate(content)]


def _user_part(part: Any, i: int, j: int) -> dict[str, Any]:
    where = f"messages[{i}].content[{j}]"
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise invalid_request(f"{where}.text: Field required", param=f"{where}.text")
        return _cached({"type": "text", "text": part["text"]}, part)
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            raise invalid_request(f"{where}.image_url.url: Field required", param=f"{where}.image_url")
        return _cached(media_block(url, where), part)
    if kind == "file":
        return _cached(_file_block(part.get("file") or {}, where), part)
    if kind == "input_audio":
        raise invalid_request(f"{where}: audio input is not supported by Anthropic models", param=where)
    if kind in ("document", "image", "search_result") and isinstance(part, dict):
        return part  # an Anthropic block given as is (e.g. a document with citations enabled)
    raise invalid_request(f"{where}.type: unsupported content part {kind!r}", param=where)


def media_block(url: str, where: str) -> dict[str, Any]:
    """An image or document block for a `data:` or http(s) URL."""
    if url.startswith("data:"):
        match = _DATA_URL.match(url)
        if not match or not match.group(3):
            raise invalid_request(
                f"{where}: expected a base64 data URL (data:<type>;base64,...)", param=where
            )
        media_type, data = (match.group(1) or "").lower(), match.group(4)
        if media_type in _IMAGE_TYPES:
            return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
        if media_type == "application/pdf":
            return {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": data},
            }
        if media_type == "text/plain":
            return {
                "type": "document",
                "source": {"type": "text", "media_type": "text/plain", "data": _b64_text(data, where)},
            }
        raise invalid_request(
            f"{where}: unsupported media type {media_type!r}; Anthropic takes "
            "image/jpeg, image/png, image/gif, image/webp, application/pdf, text/plain",
            param=where,
        )
    if url.startswith(("http://", "https://")):
        kind = "document" if url.split("?", 1)[0].lower().endswith(".pdf") else "image"
        return {"type": kind, "source": {"type": "url", "url": url}}
    raise invalid_request(f"{where}: image URL must be a data: or http(s) URL", param=where)


def _b64_text(data: str, where: str) -> str:
    try:
        return base64.b64decode(data, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise invalid_request(f"{where}: text/plain data is not valid base64 UTF-8", param=where) from None


def _file_block(file: dict[str, Any], where: str) -> dict[str, Any]:
    if isinstance(file.get("file_data"), str):
        data = file["file_data"]
        block = media_block(
            data if data.startswith("data:") else "data:application/pdf;base64," + data, where
        )
    elif isinstance(file.get("file_id"), str):
        block = {"type": "document", "source": {"type": "file", "file_id": file["file_id"]}}
    else:
        raise invalid_request(f"{where}.file: file_data or file_id required", param=f"{where}.file")
    if block["type"] == "document" and isinstance(file.get("filename"), str):
        block["title"] = file["filename"]
    return block


def _assistant_blocks(message: dict[str, Any], i: int, pending_fn: dict[str, str]) -> list[dict[str, Any]]:
    blocks = [_thinking_block(b, i) for b in message.get("thinking_blocks") or ()]
    blocks.extend(_text_blocks(message.get("content"), i))
    for j, call in enumerate(message.get("tool_calls") or ()):
        blocks.append(_tool_use(call, f"messages[{i}].tool_calls[{j}]"))
    legacy = message.get("function_call")
    if isinstance(legacy, dict) and legacy.get("name"):
        call_id = pending_fn[legacy["name"]] = f"call_fn_{i}"
        blocks.append(
            _tool_use({"id": call_id, "type": "function", "function": legacy}, f"messages[{i}].function_call")
        )
    return blocks


def _thinking_block(block: Any, i: int) -> dict[str, Any]:
    """A thinking block echoed back by the client, reduced to the fields Anthropic takes."""
    if isinstance(block, dict) and block.get("type") == "thinking":
        return {
            "type": "thinking",
            "thinking": block.get("thinking") or "",
            "signature": block.get("signature") or "",
        }
    if isinstance(block, dict) and block.get("type") == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.get("data") or ""}
    raise invalid_request(
        f"messages[{i}].thinking_blocks: expected thinking or redacted_thinking blocks",
        param=f"messages[{i}].thinking_blocks",
    )


def _tool_use(call: Any, where: str) -> dict[str, Any]:
    if not isinstance(call, dict) or call.get("type", "function") != "function":
        raise invalid_request(f"{where}: only function tool calls are supported", param=where)
    fn = call.get("function") or {}
    arguments = fn.get("arguments") or "{}"
    try:
        args = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError:
        raise invalid_request(f"{where}.function.arguments: not valid JSON", param=where) from None
    if not isinstance(args, dict):
        raise invalid_request(f"{where}.function.arguments: must be a JSON object", param=where)
    if not isinstance(call.get("id"), str) or not isinstance(fn.get("name"), str):
        raise invalid_request(f"{where}: id and function.name are required", param=where)
    block = {"type": "tool_use", "id": call["id"], "name": fn["name"], "input": args}
    return _cached(block, call)


def _tool_result(message: dict[str, Any], call_id: Any, i: int) -> dict[str, Any]:
    if not isinstance(call_id, str):
        raise invalid_request(
            f"messages[{i}].tool_call_id: Field required", param=f"messages[{i}].tool_call_id"
        )
    content = message.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        block["content"] = content
    elif isinstance(content, list):
        block["content"] = [_user_part(p, i, j) for j, p in enumerate(content)]
    elif content is not None:
        raise GatewayError(
            400,
            f"messages[{i}].content: Input should be a string or a list of parts",
            param=f"messages[{i}].content",
        )
    return block
