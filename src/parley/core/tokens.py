"""Local token estimate for backends without a count_tokens endpoint.

Method: about four characters per token for all text the model reads (system, every message block,
tool names, descriptions and schemas), plus fixed costs: 3 per request, 4 per message, 10 per tool,
1,600 per image (Anthropic's cost for a ~1.15 megapixel image), 1,500 per PDF page (a page is
counted per 50 KB of decoded PDF, at least one). It overestimates slightly for code and
underestimates for CJK text; good enough for budgets and context decisions, not billing.
"""

from __future__ import annotations

from typing import Any

import orjson

IMAGE_TOKENS = 1600
PDF_PAGE_TOKENS = 1500
PDF_BYTES_PER_PAGE = 50_000


def text_tokens(text: str) -> int:
    return (len(text) + 3) // 4 if text else 0


def count_request_tokens(body: dict[str, Any]) -> int:
    """Estimated input tokens of an Anthropic Messages request body."""
    total = 3 + _content_tokens(body.get("system"))
    for tool in body.get("tools") or ():
        if isinstance(tool, dict):
            total += 10 + text_tokens(str(tool.get("name", "")))
            total += text_tokens(str(tool.get("description", "")))
            schema = tool.get("input_schema")
            if schema is not None:
                total += text_tokens(orjson.dumps(schema).decode())
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            total += 4 + _content_tokens(message.get("content"))
    return total


def _content_tokens(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return text_tokens(content)
    if isinstance(content, list):
        return sum(_block_tokens(block) for block in content)
    return text_tokens(str(content))


def _block_tokens(block: Any) -> int:
    if isinstance(block, str):
        return text_tokens(block)
    if not isinstance(block, dict):
        return 0
    kind = block.get("type")
    if kind == "text":
        return text_tokens(str(block.get("text", "")))
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "document":
        return _document_tokens(block)
    if kind == "thinking":
        return text_tokens(str(block.get("thinking", "")))
    if kind == "redacted_thinking":
        return text_tokens(str(block.get("data", "")))
    if kind in ("tool_use", "server_tool_use"):
        return (
            5
            + text_tokens(str(block.get("name", "")))
            + text_tokens(orjson.dumps(block.get("input", {})).decode())
        )
    if kind in ("tool_result", "mid_conv_system", "search_result"):
        return 5 + _content_tokens(block.get("content"))
    return text_tokens(orjson.dumps(block).decode())


def _document_tokens(block: dict[str, Any]) -> int:
    source = block.get("source") or {}
    kind = source.get("type")
    extra = text_tokens(str(block.get("title") or "")) + text_tokens(str(block.get("context") or ""))
    if kind == "text":
        return extra + text_tokens(str(source.get("data", "")))
    if kind == "content":
        return extra + _content_tokens(source.get("content"))
    if kind == "base64":
        pages = max(1, (len(source.get("data", "")) * 3 // 4) // PDF_BYTES_PER_PAGE)
        return extra + pages * PDF_PAGE_TOKENS
    return extra + PDF_PAGE_TOKENS
