"""Anthropic Messages request -> Gemini `generateContent` request (AI Studio and Vertex AI).

`to_gemini_request(body)` returns the Gemini body and the request fields that had no equivalent
and were dropped (for `x-parley-dropped`). What Gemini cannot serve faithfully (Files API ids,
server tools the caller relies on, malformed shapes) raises GatewayError 400 naming the cause.

Thought signatures come back as Gemini sent them: a thinking block's signature on its thought
part (an empty thinking block's on the part before it, else the one after), a tool call's in its
id (see `ids`). Signatures Gemini did not make (a Claude thinking block's) are not sent.
"""

from __future__ import annotations

from typing import Any

from parley.core.errors import invalid_request
from parley.translate.anthropic_to_openai import HINT_FIELDS, KNOWN_FIELDS, client_tools
from parley.translate.fields import check_unemulated
from parley.translate.gemini.ids import gemini_signature, signature_of

_CHOICE_MODES = {"auto": "AUTO", "any": "ANY", "tool": "ANY", "none": "NONE"}
_IMAGE_TYPES = {".png": "image/png", ".gif": "image/gif", ".webp": "image/webp"}


def to_gemini_request(body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The generateContent body for an Anthropic Messages `body`, and the dropped field names."""
    for name in body:
        if name not in KNOWN_FIELDS:
            raise invalid_request(f"{name}: Extra inputs are not permitted", param=name)
    dropped = [name for name in HINT_FIELDS if body.get(name) is not None]
    check_unemulated(body, dropped)
    out: dict[str, Any] = {"contents": _contents(body.get("messages"))}
    system = _system_parts(body.get("system"))
    if system:
        out["systemInstruction"] = {"parts": system}
    declarations = _declarations(body.get("tools"), body.get("tool_choice"), dropped)
    if declarations:
        out["tools"] = [{"functionDeclarations": declarations}]
        names = {d["name"] for d in declarations}
        config = _tool_config(body.get("tool_choice"), names)
        if config:
            out["toolConfig"] = {"functionCallingConfig": config}
    out["generationConfig"] = _generation(body, dropped)
    if body.get("metadata"):
        dropped.append("metadata")
    return out, list(dict.fromkeys(dropped))


def _generation(body: dict[str, Any], dropped: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {"maxOutputTokens": body["max_tokens"]}
    for ours, theirs in (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK")):
        if body.get(ours) is not None:
            config[theirs] = body[ours]
    if body.get("stop_sequences"):
        config["stopSequences"] = list(body["stop_sequences"])
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        config["thinkingConfig"] = {"thinkingBudget": thinking.get("budget_tokens"), "includeThoughts": True}
    elif isinstance(thinking, dict) and thinking.get("type") == "adaptive":
        config["thinkingConfig"] = {"thinkingBudget": -1, "includeThoughts": True}  # dynamic
    output = body.get("output_config")
    output = output if isinstance(output, dict) else {}
    fmt = output.get("format") or body.get("output_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        config["responseMimeType"] = "application/json"
        config["responseJsonSchema"] = fmt.get("schema") or {}
    if output.get("effort") is not None:
        dropped.append("output_config.effort")
    return config


# ----------------------------------------------------------------------------- tools


def _declarations(tools: Any, choice: Any, dropped: list[str]) -> list[dict[str, Any]]:
    return [
        _declaration(name, description, schema)
        for name, description, schema, _ in client_tools(tools, choice, dropped, "Gemini")
    ]


def _declaration(name: str, description: Any, schema: dict[str, Any]) -> dict[str, Any]:
    # parametersJsonSchema takes JSON Schema as is (`parameters` is a restricted OpenAPI subset)
    out: dict[str, Any] = {"name": name, "parametersJsonSchema": schema}
    if isinstance(description, str) and description:
        out["description"] = description
    return out


def _tool_config(choice: Any, names: set[str]) -> dict[str, Any] | None:
    if not isinstance(choice, dict):
        return None
    kind = choice.get("type")
    if kind not in _CHOICE_MODES:
        raise invalid_request(f"tool_choice.type: unknown value {kind!r}", param="tool_choice")
    config: dict[str, Any] = {"mode": _CHOICE_MODES[kind]}
    if kind == "tool":
        if choice.get("name") not in names:
            raise invalid_request(f"tool_choice.name: no tool named {choice.get('name')!r} in tools")
        config["allowedFunctionNames"] = [choice["name"]]
    return config


# ----------------------------------------------------------------------------- contents


def _system_parts(system: Any) -> list[dict[str, Any]]:
    if system is None:
        return []
    if isinstance(system, str):
        return [{"text": system}] if system else []
    if not isinstance(system, list):
        raise invalid_request("system: Input should be a string or a list of text blocks")
    return [{"text": b["text"]} for b in system if isinstance(b, dict) and b.get("text")]


def _contents(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list):
        raise invalid_request("messages: Field required")
    names: dict[str, str] = {}  # tool_use id -> function name (a functionResponse needs the name)
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid_request(f"messages.{i}: Input should be a valid dictionary")
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        elif not isinstance(content, list):
            raise invalid_request(f"messages.{i}.content: Input should be a string or a list")
        role = message.get("role")
        where = f"messages.{i}"
        if role == "assistant":
            parts = _model_parts(content, names, where)
        elif role in ("user", "system"):
            parts = _user_parts(content, names, where)
        else:
            raise invalid_request(f"{where}.role: Input should be 'user' or 'assistant'")
        if parts:
            out.append({"role": "model" if role == "assistant" else "user", "parts": parts})
    return out


def _model_parts(content: list[Any], names: dict[str, str], where: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    pending: str | None = None  # an empty thinking block's signature, for the next part
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        part: dict[str, Any] | None = None
        if kind == "text":
            part = {"text": block.get("text", "")}
        elif kind == "thinking":
            if block.get("thinking"):
                part = {"text": block["thinking"], "thought": True}
                if gemini_signature(block.get("signature")):
                    part["thoughtSignature"] = gemini_signature(block["signature"])
            elif parts and "thoughtSignature" not in parts[-1] and gemini_signature(block.get("signature")):
                parts[-1]["thoughtSignature"] = gemini_signature(block["signature"])  # a signed text's
            else:
                pending = gemini_signature(block.get("signature"))
        elif kind == "tool_use":
            ident = str(block.get("id", ""))
            names[ident] = str(block.get("name", ""))
            part = {"functionCall": {"name": block.get("name"), "args": block.get("input") or {}}}
            if signature_of(ident):
                part["thoughtSignature"] = signature_of(ident)
        elif kind in ("redacted_thinking", None):
            continue
        else:
            raise invalid_request(f"{where}.content.{j}: {kind} blocks cannot be sent to Gemini")
        if part is not None:
            if pending and "thoughtSignature" not in part:
                part["thoughtSignature"] = pending
            pending = None
            parts.append(part)
    return parts


def _user_parts(content: list[Any], names: dict[str, str], where: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    after: list[dict[str, Any]] = []  # images returned by tools go after the function responses
    for j, block in enumerate(content):
        if not isinstance(block, dict):
            raise invalid_request(f"{where}.content.{j}: Input should be a valid dictionary")
        kind, at = block.get("type"), f"{where}.content.{j}"
        if kind == "text":
            parts.append({"text": block.get("text", "")})
        elif kind == "image":
            parts.append(_media(block, at, image=True))
        elif kind == "document":
            parts.extend(_document(block, at))
        elif kind == "tool_result":
            response, media = _tool_result(block, at)
            name = names.get(str(block.get("tool_use_id")))
            if name is None:
                raise invalid_request(f"{at}.tool_use_id: no tool_use with this id in an earlier turn")
            parts.append({"functionResponse": {"name": name, "response": response}})
            after.extend(media)
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise invalid_request(f"{at}: {kind} blocks cannot be sent to Gemini")
    return parts + after


def _tool_result(block: dict[str, Any], where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    content = block.get("content")
    texts: list[str] = []
    media: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for k, item in enumerate(content):
            if isinstance(item, dict) and item.get("type") == "text":
                texts.append(item.get("text", ""))
            elif isinstance(item, dict) and item.get("type") == "image":
                media.append(_media(item, f"{where}.content.{k}", image=True))
            elif isinstance(item, dict) and item.get("type") == "document":
                media.extend(_document(item, f"{where}.content.{k}"))
    text = "\n".join(texts)
    return ({"error": text} if block.get("is_error") else {"output": text}), media


def _media(block: dict[str, Any], where: str, image: bool) -> dict[str, Any]:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and isinstance(source, dict):
        return {"inlineData": {"mimeType": source.get("media_type"), "data": source.get("data")}}
    if kind == "url" and isinstance(source, dict):
        url = str(source.get("url"))
        suffix = url.rsplit("?", 1)[0][-5:].lower()
        guess = next((t for ext, t in _IMAGE_TYPES.items() if suffix.endswith(ext)), "image/jpeg")
        return {"fileData": {"mimeType": guess if image else "application/pdf", "fileUri": url}}
    raise invalid_request(
        f"{where}.source: {kind} sources cannot be sent to Gemini (use base64 or url)", param="messages"
    )


def _document(block: dict[str, Any], where: str) -> list[dict[str, Any]]:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "text" and isinstance(source, dict):
        return [{"text": _titled(block, str(source.get("data", "")))}]
    if kind == "content" and isinstance(source, dict):
        items = source.get("content")
        if isinstance(items, str):
            return [{"text": _titled(block, items)}]
        return [{"text": i.get("text", "")} for i in items or () if isinstance(i, dict) and i.get("text")]
    return [_media(block, where, image=False)]


def _titled(block: dict[str, Any], text: str) -> str:
    head = [str(block[k]) for k in ("title", "context") if block.get(k)]
    return "\n\n".join([*head, text])
