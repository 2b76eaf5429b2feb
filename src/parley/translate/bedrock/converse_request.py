"""Anthropic Messages request -> Amazon Bedrock Converse request.

`to_converse_request(body, model, betas)` returns the Converse body and the names of what had no
Converse equivalent and was dropped. What Converse can express is kept: text, base64 images and
documents, tools and tool results, reasoning blocks with their signatures, `cache_control` as cache
points. What a Bedrock model cannot be sent at all (image or document URLs, Files API ids) is a 400
naming the block; consecutive turns of one role are merged (Converse requires alternation).
"""

from __future__ import annotations

import base64
import re
from typing import Any

from parley.core.errors import invalid_request
from parley.translate.fields import check_unemulated

IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
DOCUMENT_FORMATS = {
    "application/pdf": "pdf",
    "text/plain": "txt",
    "text/csv": "csv",
    "text/html": "html",
    "text/markdown": "md",
}
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9\-\(\)\[\] ]+")


def is_anthropic_model(model: str) -> bool:
    return "anthropic." in model or "claude" in model


def to_converse_request(
    body: dict[str, Any], model: str, betas: list[str]
) -> tuple[dict[str, Any], list[str]]:
    """The Converse body for a hub request, and the names of what was dropped."""
    dropped: list[str] = []
    check_unemulated(body, dropped)
    claude = is_anthropic_model(model)
    out: dict[str, Any] = {"messages": _messages(body.get("messages"), dropped)}
    system = _system(body.get("system"))
    if system:
        out["system"] = system
    out["inferenceConfig"] = _inference(body)
    tools = _tool_config(body, dropped)
    if tools:
        out["toolConfig"] = tools
    extra: dict[str, Any] = {}
    for name in ("top_k", "thinking"):
        if body.get(name) is not None:
            if claude:
                extra[name] = body[name]
            else:
                dropped.append(name)
    if betas:
        if claude:
            extra["anthropic_beta"] = betas
        else:
            dropped.append("anthropic-beta")
    if extra:
        out["additionalModelRequestFields"] = extra
    for name in ("output_config", "output_format", "context_management", "mcp_servers", "cache_control"):
        if body.get(name) is not None:
            dropped.append(name)
    return out, dropped


def _inference(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if body.get("max_tokens") is not None:
        config["maxTokens"] = body["max_tokens"]
    if body.get("temperature") is not None:
        config["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        config["topP"] = body["top_p"]
    if body.get("stop_sequences"):
        config["stopSequences"] = list(body["stop_sequences"])
    return config


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None or system == "":
        return []
    if isinstance(system, str):
        return [{"text": system}]
    if not isinstance(system, list):
        raise invalid_request("system: Input should be a valid string or list", param="system")
    out: list[dict[str, Any]] = []
    for block in system:
        if isinstance(block, dict) and block.get("type") == "text":
            if block.get("text"):
                out.append({"text": block["text"]})
            _cache_point(block, out)
    return out


def _cache_point(block: dict[str, Any], out: list[dict[str, Any]]) -> None:
    control = block.get("cache_control")
    if isinstance(control, dict):
        point: dict[str, Any] = {"type": "default"}
        if control.get("ttl") in ("5m", "1h"):
            point["ttl"] = control["ttl"]
        out.append({"cachePoint": point})


def _messages(messages: Any, dropped: list[str]) -> list[dict[str, Any]]:
    if not isinstance(messages, list):
        raise invalid_request("messages: Input should be a valid list", param="messages")
    out: list[dict[str, Any]] = []
    counter = [0]
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise invalid_request(f"messages.{i}: role must be user or assistant", param="messages")
        content = _content(message.get("content"), f"messages.{i}", dropped, counter)
        if out and out[-1]["role"] == message["role"]:
            out[-1]["content"].extend(content)
        else:
            out.append({"role": message["role"], "content": content})
    return out


def _content(content: Any, where: str, dropped: list[str], counter: list[int]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise invalid_request(f"{where}.content: Input should be a valid string or list", param="messages")
    out: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        if not isinstance(block, dict):
            raise invalid_request(f"{where}.content.{j}: must be an object", param="messages")
        converted = _block(block, f"{where}.content.{j}", counter)
        if converted is None:
            name = f"content block {block.get('type')}"
            if name not in dropped:
                dropped.append(name)
            continue
        out.append(converted)
        _cache_point(block, out)
    return out


def _block(block: dict[str, Any], where: str, counter: list[int]) -> dict[str, Any] | None:
    kind = block.get("type")
    if kind == "text":
        return {"text": block.get("text", "")}
    if kind == "image":
        return {"image": _image(block, where)}
    if kind == "document":
        counter[0] += 1
        return {"document": _document(block, where, counter[0])}
    if kind == "tool_use":
        return {
            "toolUse": {"toolUseId": block.get("id"), "name": block.get("name"), "input": block.get("input")}
        }
    if kind == "tool_result":
        return {"toolResult": _tool_result(block, where, counter)}
    if kind == "thinking":
        text: dict[str, Any] = {"text": block.get("thinking", "")}
        if block.get("signature"):
            text["signature"] = block["signature"]
        return {"reasoningContent": {"reasoningText": text}}
    if kind == "redacted_thinking":
        return {"reasoningContent": {"redactedContent": block.get("data", "")}}
    return None


def _source(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise invalid_request(f"{where}.source: Field required", param="messages")
    if source.get("type") not in ("base64", "text"):
        raise invalid_request(
            f"{where}: Amazon Bedrock Converse takes only inline (base64) {block.get('type')}s, "
            f"not source type {source.get('type')!r}",
            param="messages",
        )
    return source


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = _source(block, where)
    fmt = IMAGE_FORMATS.get(str(source.get("media_type")))
    if fmt is None or source.get("type") != "base64":
        raise invalid_request(f"{where}.source.media_type: not an image type Bedrock takes", param="messages")
    return {"format": fmt, "source": {"bytes": source.get("data", "")}}


def _document(block: dict[str, Any], where: str, n: int) -> dict[str, Any]:
    source = _source(block, where)
    fmt = DOCUMENT_FORMATS.get(str(source.get("media_type")))
    if fmt is None:
        raise invalid_request(
            f"{where}.source.media_type: not a document type Bedrock takes", param="messages"
        )
    data = source.get("data", "")
    if source.get("type") == "text":
        data = base64.b64encode(str(data).encode()).decode()
    title = _NAME_UNSAFE.sub(" ", str(block.get("title") or "")).strip()
    name = re.sub(r"\s+", " ", title)[:200] or f"document-{n}"
    out: dict[str, Any] = {"format": fmt, "name": name, "source": {"bytes": data}}
    if block.get("context"):
        out["context"] = block["context"]
    return out


def _tool_result(block: dict[str, Any], where: str, counter: list[int]) -> dict[str, Any]:
    content = block.get("content")
    parts: list[dict[str, Any]] = []
    if isinstance(content, str):
        parts.append({"text": content})
    elif isinstance(content, list):
        for k, item in enumerate(content):
            if not isinstance(item, dict):
                continue
            if item.get("type") == "text":
                parts.append({"text": item.get("text", "")})
            elif item.get("type") == "image":
                parts.append({"image": _image(item, f"{where}.content.{k}")})
            elif item.get("type") == "document":
                counter[0] += 1
                parts.append({"document": _document(item, f"{where}.content.{k}", counter[0])})
    if not parts:
        parts.append({"text": ""})
    out: dict[str, Any] = {"toolUseId": block.get("tool_use_id"), "content": parts}
    if block.get("is_error"):
        out["status"] = "error"
    return out


def _tool_config(body: dict[str, Any], dropped: list[str]) -> dict[str, Any] | None:
    tools = body.get("tools")
    if not tools:
        return None
    if not isinstance(tools, list):
        raise invalid_request("tools: Input should be a valid list", param="tools")
    specs: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not tool.get("name"):
            raise invalid_request(f"tools.{i}: each tool needs a name", param="tools")
        if tool.get("type") not in (None, "custom"):
            dropped.append(f"tool {tool['name']}")
            continue
        spec: dict[str, Any] = {"name": tool["name"], "inputSchema": {"json": tool.get("input_schema") or {}}}
        if tool.get("description"):
            spec["description"] = tool["description"]
        specs.append({"toolSpec": spec})
        _cache_point(tool, specs)
    if not specs:
        return None
    config: dict[str, Any] = {"tools": specs}
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind in ("auto", "any"):
            config["toolChoice"] = {kind: {}}
        elif kind == "tool":
            config["toolChoice"] = {"tool": {"name": choice.get("name")}}
        elif kind == "none":
            dropped.append("tool_choice")  # Converse has no "none"; tools stay declared
        if choice.get("disable_parallel_tool_use"):
            dropped.append("tool_choice.disable_parallel_tool_use")
    return config
