"""Anthropic Messages request -> OpenAI Chat Completions request (reference §8.2).

`to_openai_request(body, options, model=...)` returns the OpenAI body and the names of request
fields that had no equivalent and were dropped (for the `x-parley-dropped` header). Requests that
cannot be served faithfully (server tools the caller relies on, PDFs where the server takes none,
Files API ids, malformed shapes) raise GatewayError 400 with a message naming the cause.
"""

from __future__ import annotations

from typing import Any

import orjson

from parley.core import claude_code
from parley.core.errors import GatewayError, invalid_request, thread_error
from parley.translate.fields import BODY_FIELDS, OPENAI_DROPPED
from parley.translate.openai_options import OpenAIOptions

# Top-level request fields the Messages API knows (others get Anthropic's "Extra inputs" 400) and
# the hints with no Chat Completions equivalent (dropped and listed, never a failure): the fate
# table in `parley.translate.fields`.
KNOWN_FIELDS = frozenset(BODY_FIELDS)
HINT_FIELDS = tuple(name for name in OPENAI_DROPPED if name != "billing_policy")
# Server-executed tools by name: the model cannot use them behind an OpenAI-compatible server.
SERVER_TOOL_NAMES = frozenset(
    {
        "web_search",
        "web_fetch",
        "code_execution",
        "tool_search_tool_bm25",
        "tool_search_tool_regex",
        "advisor",
    }
)
# Anthropic-defined, client-executed tools whose input schema is fixed by Anthropic.
CLIENT_TOOL_SCHEMAS: dict[str, dict[str, Any]] = {
    "bash": {
        "type": "object",
        "properties": {
            "command": {"type": "string", "description": "The bash command to run."},
            "restart": {"type": "boolean", "description": "Restart the shell session."},
        },
    },
    "str_replace_editor": {
        "type": "object",
        "required": ["command", "path"],
        "properties": {
            "command": {"type": "string", "enum": ["view", "create", "str_replace", "insert", "undo_edit"]},
            "path": {"type": "string"},
            "file_text": {"type": "string"},
            "old_str": {"type": "string"},
            "new_str": {"type": "string"},
            "insert_line": {"type": "integer"},
            "view_range": {"type": "array", "items": {"type": "integer"}},
        },
    },
}
CLIENT_TOOL_SCHEMAS["str_replace_based_edit_tool"] = CLIENT_TOOL_SCHEMAS["str_replace_editor"]
CLIENT_TOOL_SCHEMAS["memory"] = {  # memory_20250818: the client keeps the /memories directory
    "type": "object",
    "required": ["command"],
    "properties": {
        "command": {
            "type": "string",
            "enum": ["view", "create", "str_replace", "insert", "delete", "rename"],
        },
        "path": {"type": "string", "description": "A path under /memories"},
        "view_range": {"type": "array", "items": {"type": "integer"}},
        "file_text": {"type": "string"},
        "old_str": {"type": "string"},
        "new_str": {"type": "string"},
        "insert_line": {"type": "integer"},
        "insert_text": {"type": "string"},
        "old_path": {"type": "string"},
        "new_path": {"type": "string"},
    },
}
BUDGET_EFFORT = ((4096, "low"), (16384, "medium"))  # budget_tokens below -> effort; else "high"


def to_openai_request(
    body: dict[str, Any], options: OpenAIOptions, model: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The Chat Completions body for an Anthropic Messages `body`, and the dropped field names."""
    for name in body:
        if name not in KNOWN_FIELDS:
            raise invalid_request(f"{name}: Extra inputs are not permitted", param=name)
    if body.get("thread") is not None:  # parley's thread store (filters/threads.py) is off here
        raise thread_error(
            400,
            "thread_unsupported_request",
            "thread: this model's backend holds no threads and parley has no database to hold "
            "them; send the whole conversation without `thread`",
        )
    dropped: list[str] = [name for name in HINT_FIELDS if body.get(name) is not None]
    _billing_policy(body.get("billing_policy"), dropped)
    out: dict[str, Any] = {"model": model or body["model"]}
    tools, tool_names = _tools(body.get("tools"), body.get("tool_choice"), dropped)
    out["messages"] = _messages(body, options, dropped)
    out[options.max_tokens_field] = body["max_tokens"]
    if tools:
        out["tools"] = tools
        _tool_choice(body.get("tool_choice"), tool_names, out)
    _sampling(body, options, out, dropped)
    _reasoning(body, options, out, dropped)
    _response_format(body, out)
    if body.get("stream"):
        out["stream"] = True
        if options.stream_include_usage:
            out["stream_options"] = {"include_usage": True}
    out.update(options.extra_body)
    if body.get("compaction") is not None:
        _compaction_request(body["compaction"], out)
    return out, list(dict.fromkeys(dropped))


COMPACTION_PROMPT = (
    "Summarize the conversation above so that it can continue from the summary alone: the task and "
    "its goal, decisions made, facts and results learned (file names, values, errors), what was done "
    "and what remains to do. Reply with the summary only."
)


def _compaction_request(config: Any, out: dict[str, Any]) -> None:
    """A compaction (emulated): the backend is asked for a summary of the conversation, with no
    tools and no streaming; the provider returns it as one `compaction` block."""
    if not isinstance(config, dict) or config.get("type") != "summarize":
        raise invalid_request("compaction.type: Input should be 'summarize'", param="compaction")
    instructions = config.get("instructions")
    prompt = instructions if isinstance(instructions, str) and instructions.strip() else COMPACTION_PROMPT
    for name in (
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "stream",
        "stream_options",
    ):
        out.pop(name, None)
    out["messages"].append({"role": "user", "content": prompt})


# ----------------------------------------------------------------------------- top-level fields


def _sampling(body: dict[str, Any], options: OpenAIOptions, out: dict[str, Any], dropped: list[str]) -> None:
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("top_k") is not None:
        if options.supports_top_k:
            out["top_k"] = body["top_k"]
        else:
            dropped.append("top_k")
    stops = body.get("stop_sequences")
    if stops:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise invalid_request(
                "stop_sequences: Input should be a valid list of strings", param="stop_sequences"
            )
        cap = options.max_stop_sequences
        if cap is not None and len(stops) > cap:
            stops = stops[:cap]
            dropped.append(f"stop_sequences[{cap}:]")
        if stops:
            out["stop"] = stops
    metadata = body.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    if isinstance(user, str) and user:
        if options.user_field:
            out[options.user_field] = user
        else:
            dropped.append("metadata.user_id")


def _billing_policy(policy: Any, dropped: list[str]) -> None:
    if policy is None:
        return
    bill_to = policy.get("bill_to", "self") if isinstance(policy, dict) else None
    if bill_to != "self":
        raise invalid_request(
            "billing_policy: only bill_to 'self' can be served by this model's backend "
            "(billing a user profile needs an Anthropic deployment)",
            param="billing_policy",
        )
    dropped.append("billing_policy")


def _reasoning(body: dict[str, Any], options: OpenAIOptions, out: dict[str, Any], dropped: list[str]) -> None:
    thinking = v if isinstance(v := body.get("thinking"), dict) else {}
    config = v if isinstance(v := body.get("output_config"), dict) else {}
    effort = config.get("effort")
    if effort is None and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens") or 0
        effort = next((name for limit, name in BUDGET_EFFORT if budget < limit), "high")
    if effort is None:
        return
    if options.reasoning_effort:
        out["reasoning_effort"] = effort
    else:
        dropped.append("output_config.effort" if config.get("effort") else "thinking")


def _response_format(body: dict[str, Any], out: dict[str, Any]) -> None:
    config = v if isinstance(v := body.get("output_config"), dict) else {}
    fmt = config.get("format") or body.get("output_format")
    if not isinstance(fmt, dict):
        return
    if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise invalid_request(
            "output_config.format: expected {type: json_schema, schema: {...}}", param="output_config"
        )
    out["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": fmt["schema"], "strict": True},
    }


def compaction_text(summary: str) -> str:
    """A `compaction` block (an earlier conversation summarized) as text the model reads."""
    return "Summary of the conversation so far:\n\n" + summary


# ----------------------------------------------------------------------------- tools


def client_tools(
    tools: Any, choice: Any, dropped: list[str], backend: str
) -> list[tuple[str, Any, dict[str, Any], Any]]:
    """(name, description, input schema, strict) of each tool the client runs: custom tools and
    Anthropic's client tools (their published schema). Server tools are dropped and listed, or a
    400 naming `backend` when the request relies on them; MCP toolsets are dropped."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise invalid_request("tools: Input should be a valid list", param="tools")
    out: list[tuple[str, Any, dict[str, Any], Any]] = []
    server: list[str] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise invalid_request(f"tools.{i}: each tool needs a name", param="tools")
        kind = tool.get("type")
        name = tool["name"]
        if kind in (None, "custom"):
            schema = tool.get("input_schema")
            if not isinstance(schema, dict):
                raise invalid_request(f"tools.{i}.input_schema: Field required", param="tools")
            out.append((name, tool.get("description"), schema, tool.get("strict")))
        elif name in CLIENT_TOOL_SCHEMAS:
            out.append((name, None, CLIENT_TOOL_SCHEMAS[name], None))
        elif kind == "mcp_toolset":
            dropped.append("tools.mcp_toolset")
        else:
            server.append(f"{name} ({kind})")
    if server:
        _reject_relied_on_server_tools(server, bool(out), choice, backend)
        dropped.extend(f"tools.{label.split(' ')[0]}" for label in server)
    return out


def _tools(tools: Any, choice: Any, dropped: list[str]) -> tuple[list[dict[str, Any]], set[str]]:
    backend = "this model's OpenAI-compatible backend"
    out = [_function(*spec) for spec in client_tools(tools, choice, dropped, backend)]
    return out, {t["function"]["name"] for t in out}


def _function(name: str, description: Any, schema: dict[str, Any], strict: Any) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name, "parameters": schema}
    if isinstance(description, str) and description:
        function["description"] = description
    if strict is True:
        function["strict"] = True
    return {"type": "function", "function": function}


def _reject_relied_on_server_tools(server: list[str], kept: bool, choice: Any, backend: str) -> None:
    """Server tools are hints unless the request only offers them or forces one."""
    forced = choice.get("name") if isinstance(choice, dict) and choice.get("type") == "tool" else None
    server_names = {label.split(" ")[0] for label in server}
    if forced in server_names or not kept:
        named = forced if forced in server_names else ", ".join(server)
        raise GatewayError(
            400,
            f"tools: {named} runs on Anthropic's servers and is not available "
            f"on {backend}; remove it or use an Anthropic deployment",
            "invalid_request_error",
            param="tools",
        )


def _tool_choice(choice: Any, names: set[str], out: dict[str, Any]) -> None:
    if not isinstance(choice, dict):
        return
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool":
        name = choice.get("name")
        if name not in names:
            raise invalid_request(f"tool_choice.name: no tool named {name!r} in tools", param="tool_choice")
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        raise invalid_request(f"tool_choice.type: unknown value {kind!r}", param="tool_choice")
    if choice.get("disable_parallel_tool_use") and kind != "none":
        out["parallel_tool_calls"] = False


# ----------------------------------------------------------------------------- messages


def _messages(body: dict[str, Any], options: OpenAIOptions, dropped: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    system = _system_text(body.get("system"), "system", strip_attribution=True)
    if system:
        out.append({"role": "system", "content": system})
    for i, message in enumerate(body["messages"]):
        if not isinstance(message, dict):
            raise invalid_request(f"messages.{i}: Input should be a valid dictionary")
        role = message.get("role")
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        elif not isinstance(content, list):
            raise invalid_request(f"messages.{i}.content: Input should be a string or a list")
        where = f"messages.{i}"
        if role == "user":
            out.extend(_user_turn(content, options, dropped, where))
        elif role == "assistant":
            out.append(_assistant_turn(content, options, dropped, where))
        elif role == "system":
            out.append({"role": "system", "content": _system_text(content, where)})
        else:
            raise invalid_request(f"{where}.role: Input should be 'user', 'assistant' or 'system'")
    return out


def _system_text(system: Any, where: str, *, strip_attribution: bool = False) -> str:
    """The text of a system prompt; with `strip_attribution`, without Claude Code's per-request
    attribution line (it would defeat the backend's prefix cache on every turn)."""
    if system is None:
        return ""
    if isinstance(system, str):
        return claude_code.without_line(system) if strip_attribution else system
    if not isinstance(system, list):
        raise invalid_request(f"{where}: Input should be a string or a list of text blocks")
    texts = []
    for block in system:
        if isinstance(block, dict) and block.get("type") == "text":
            text = str(block.get("text", ""))
            texts.append(claude_code.without_line(text) if strip_attribution else text)
        elif isinstance(block, dict) and block.get("type") == "mid_conv_system":
            texts.append(_system_text(block.get("content"), where))
        else:
            raise invalid_request(f"{where}: only text blocks are allowed here")
    return "\n\n".join(t for t in texts if t)


def _user_turn(
    blocks: list[Any], options: OpenAIOptions, dropped: list[str], where: str
) -> list[dict[str, Any]]:
    """Tool results first (one `tool` message each, in order), then the rest of the turn."""
    out: list[dict[str, Any]] = []
    moved: list[dict[str, Any]] = []  # images from tool results, for a following user message
    parts: list[dict[str, Any]] = []
    for block in blocks:
        if not isinstance(block, dict):
            raise invalid_request(f"{where}.content: blocks must be objects")
        if block.get("type") == "tool_result":
            out.append(_tool_message(block, moved, options, where))
    for block in blocks:
        kind = block.get("type")
        if kind == "tool_result":
            continue
        if kind == "mid_conv_system":
            _flush_user(out, moved + parts)
            moved, parts = [], []
            out.append({"role": "system", "content": _system_text(block.get("content"), where)})
        else:
            parts.extend(_user_parts(block, options, dropped, where))
    _flush_user(out, moved + parts)
    return out


def _flush_user(out: list[dict[str, Any]], parts: list[dict[str, Any]]) -> None:
    if not parts:
        return
    if all(p["type"] == "text" for p in parts) and len(parts) == 1:
        out.append({"role": "user", "content": parts[0]["text"]})
    else:
        out.append({"role": "user", "content": parts})


def _tool_message(
    block: dict[str, Any], moved: list[dict[str, Any]], options: OpenAIOptions, where: str
) -> dict[str, Any]:
    tool_id = block.get("tool_use_id")
    if not isinstance(tool_id, str):
        raise invalid_request(f"{where}.content: tool_result.tool_use_id: Field required")
    content = block.get("content")
    if content is None:
        content = []
    elif isinstance(content, str):
        content = [{"type": "text", "text": content}]
    texts: list[str] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image":
            if not moved:
                moved.append({"type": "text", "text": "Images returned by the tool calls above:"})
            moved.append({"type": "text", "text": f"[image from tool result {tool_id}]"})
            moved.append(_image_part(part, where))
            texts.append("[image attached in the next user message]")
        elif kind in ("text", "document", "search_result"):
            texts.extend(p["text"] for p in _user_parts(part, options, [], where) if p["type"] == "text")
        # tool_reference and unknown parts carry nothing the model can read here
    text = "\n".join(texts)
    if block.get("is_error"):
        text = "Error: " + text if text else "Error"
    return {"role": "tool", "tool_call_id": tool_id, "content": text}


def _user_parts(
    block: dict[str, Any], options: OpenAIOptions, dropped: list[str], where: str
) -> list[dict[str, Any]]:
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        if not isinstance(text, str):
            raise invalid_request(f"{where}.content: text.text: Field required")
        return [{"type": "text", "text": text}] if text else []
    if kind == "image":
        return [_image_part(block, where)]
    if kind == "document":
        return _document_parts(block, options, where)
    if kind == "search_result":
        texts = [str(c.get("text", "")) for c in block.get("content") or () if isinstance(c, dict)]
        head = f"{block.get('title', '')} ({block.get('source', '')})"
        return [{"type": "text", "text": head + "\n" + "\n".join(texts)}]
    if kind == "compaction":
        content = block.get("content")
        return [{"type": "text", "text": compaction_text(str(content))}] if content else []
    if kind in ("thinking", "redacted_thinking", "tool_use"):
        raise invalid_request(f"{where}.content: {kind} blocks are only allowed in assistant turns")
    dropped.append(f"content.{kind}")
    return []


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = v if isinstance(v := block.get("source"), dict) else {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif source.get("type") == "url":
        url = str(source.get("url", ""))
    else:
        raise invalid_request(
            f"{where}.content: image source {source.get('type')!r} is not "
            f"supported on this backend (use base64 or url)"
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _document_parts(block: dict[str, Any], options: OpenAIOptions, where: str) -> list[dict[str, Any]]:
    source = v if isinstance(v := block.get("source"), dict) else {}
    kind = source.get("type")
    head = "\n".join(str(block[k]) for k in ("title", "context") if block.get(k))
    if kind == "text":
        text = str(source.get("data", ""))
        return [{"type": "text", "text": f"{head}\n\n{text}" if head else text}]
    if kind == "content":
        inner = source.get("content")
        if isinstance(inner, str):
            inner = [{"type": "text", "text": inner}]
        parts = [p for b in inner or () if isinstance(b, dict) for p in _user_parts(b, options, [], where)]
        return ([{"type": "text", "text": head}] if head else []) + parts
    if kind == "base64" and source.get("media_type", "application/pdf") == "application/pdf":
        if not options.supports_pdf:
            raise invalid_request(
                f"{where}.content: PDF documents are not supported by this "
                f"model's backend; send the text instead"
            )
        name = str(block.get("title") or "document")
        return [
            {
                "type": "file",
                "file": {
                    "filename": name if name.endswith(".pdf") else name + ".pdf",
                    "file_data": f"data:application/pdf;base64,{source.get('data', '')}",
                },
            }
        ]
    raise invalid_request(
        f"{where}.content: document source {kind!r} is not supported on this "
        f"backend (use base64 PDF, text or content)"
    )


def _assistant_turn(
    blocks: list[Any], options: OpenAIOptions, dropped: list[str], where: str
) -> dict[str, Any]:
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            if block.get("text"):
                texts.append(str(block["text"]))
        elif kind == "tool_use":
            calls.append(
                {
                    "id": str(block.get("id", "")),
                    "type": "function",
                    "function": {
                        "name": str(block.get("name", "")),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
        elif kind == "thinking":
            if not options.reasoning_field:
                dropped.append("content.thinking")
            elif block.get("thinking"):
                reasoning.append(str(block["thinking"]))
        elif kind == "redacted_thinking":
            dropped.append("content.redacted_thinking")  # opaque to any other backend
        elif kind == "compaction":
            if block.get("content"):
                texts.append(compaction_text(str(block["content"])))
        else:
            dropped.append(f"content.{kind}")
    message: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    if reasoning and options.reasoning_field:
        message[options.reasoning_field] = "\n\n".join(reasoning)
    return message
