"""The text a guardrail reads and rewrites in request bodies and whole replies, per API.

`Edit(text, source, json_string) -> text` is called on each text slot in a fixed order; `source`
says where it came from ("system", "user", "assistant", "tool"), `json_string` that the text is
JSON inside a string (OpenAI tool-call arguments), so a restored value must be escaped.
Thinking blocks, images and ids are never touched: a thinking block's signature covers its text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Edit = Callable[[str, str, bool], str]


def request_texts(api: str, route: str, body: dict[str, Any], edit: Edit) -> None:
    """Apply `edit` to every text slot of a request body, in place."""
    if api == "openai":
        _chat_request(body, edit)
    elif route.endswith("/v1/messages/batches"):
        for item in body.get("requests") or ():
            params = item.get("params") if isinstance(item, dict) else None
            if isinstance(params, dict):
                _messages_request(params, edit)
    else:
        _messages_request(body, edit)


def latest_turn(api: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, text) of the messages after the last assistant message: what is new this turn."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    start = 0
    for i, m in enumerate(messages):
        if isinstance(m, dict) and m.get("role") == "assistant":
            start = i + 1
    out: list[tuple[str, str]] = []

    def keep(text: str, source: str, json_string: bool) -> str:
        out.append((source, text))
        return text

    tail = {"messages": messages[start:]}
    (_chat_request if api == "openai" else _messages_request)(tail, keep)
    return out


def _messages_request(body: dict[str, Any], edit: Edit) -> None:
    system = body.get("system")
    if isinstance(system, str):
        body["system"] = edit(system, "system", False)
    elif isinstance(system, list):
        _blocks(system, "system", edit)
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        source = "assistant" if message.get("role") == "assistant" else "user"
        content = message.get("content")
        if isinstance(content, str):
            message["content"] = edit(content, source, False)
        elif isinstance(content, list):
            _blocks(content, source, edit)


def _blocks(blocks: list[Any], source: str, edit: Edit) -> None:
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            block["text"] = edit(block["text"], source, False)
        elif kind == "tool_result":
            content = block.get("content")
            if isinstance(content, str):
                block["content"] = edit(content, "tool", False)
            elif isinstance(content, list):
                _blocks(content, "tool", edit)
        elif kind in ("tool_use", "server_tool_use") and "input" in block:
            block["input"] = _json_value(block["input"], source, edit)
        elif kind == "search_result" and isinstance(block.get("content"), list):
            _blocks(block["content"], source, edit)
        elif kind == "document":
            src = block.get("source")
            if isinstance(src, dict) and src.get("type") == "text" and isinstance(src.get("data"), str):
                src["data"] = edit(src["data"], source, False)
            elif isinstance(src, dict) and isinstance(src.get("content"), list):
                _blocks(src["content"], source, edit)


def _json_value(value: Any, source: str, edit: Edit) -> Any:
    if isinstance(value, str):
        return edit(value, source, False)
    if isinstance(value, dict):
        return {k: _json_value(v, source, edit) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v, source, edit) for v in value]
    return value


def _chat_request(body: dict[str, Any], edit: Edit) -> None:
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        role = str(message.get("role"))
        source = {"assistant": "assistant", "tool": "tool", "function": "tool"}.get(role, "user")
        if role in ("system", "developer"):
            source = "system"
        content = message.get("content")
        if isinstance(content, str):
            message["content"] = edit(content, source, False)
        elif isinstance(content, list):
            for part in content:
                if (
                    isinstance(part, dict)
                    and part.get("type") == "text"
                    and isinstance(part.get("text"), str)
                ):
                    part["text"] = edit(part["text"], source, False)
        _tool_calls(message.get("tool_calls"), source, edit)


def _tool_calls(calls: Any, source: str, edit: Edit) -> None:
    for call in calls if isinstance(calls, list) else ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            fn["arguments"] = edit(fn["arguments"], source, True)


def reply_texts(api: str, reply: dict[str, Any], edit: Edit) -> None:
    """Apply `edit` to every text slot of a whole reply (an Anthropic Message or a chat completion)."""
    if api == "openai":
        for choice in reply.get("choices") or ():
            message = choice.get("message") if isinstance(choice, dict) else None
            if not isinstance(message, dict):
                continue
            if isinstance(message.get("content"), str):
                message["content"] = edit(message["content"], "assistant", False)
            _tool_calls(message.get("tool_calls"), "assistant", edit)
        return
    for block in reply.get("content") or ():
        if not isinstance(block, dict):
            continue
        for citation in block.get("citations") or ():
            if isinstance(citation, dict) and isinstance(citation.get("cited_text"), str):
                citation["cited_text"] = edit(citation["cited_text"], "assistant", False)
    _blocks(reply.get("content") or [], "assistant", edit)
