"""Local token estimate for backends without a count_tokens endpoint.

Method: about four characters per token for all text the model reads (system, every message block,
tool names, descriptions and schemas), plus fixed costs: 3 per request, 4 per message, 10 per tool,
1,600 per image (Anthropic's cost for a ~1.15 megapixel image), 1,500 per PDF page (a page is
counted per 50 KB of decoded PDF, at least one). It overestimates slightly for code and
underestimates for CJK text; good enough for budgets and context decisions, not billing.

The counters take any JSON: a field of the wrong type (`tools` an object, a block's `text` a
number, a document `source` a string) counts as its JSON text instead of raising, so a malformed
request gets the upstream's own 400 rather than a gateway error.
"""

from __future__ import annotations

from typing import Any

import orjson

IMAGE_TOKENS = 1600
PDF_PAGE_TOKENS = 1500
PDF_BYTES_PER_PAGE = 50_000


def text_tokens(text: str) -> int:
    return (len(text) + 3) // 4 if text else 0


def count_request_tokens(body: Any) -> int:
    """Estimated input tokens of an Anthropic Messages request body (any JSON value)."""
    if not isinstance(body, dict):
        return 3 + _json_tokens(body)
    total = 3 + _content_tokens(body.get("system"))
    for tool in _items(body.get("tools")):
        total += _tool_tokens(tool)
    for message in _items(body.get("messages")):
        if isinstance(message, dict):
            total += 4 + _content_tokens(message.get("content"))
        else:
            total += _json_tokens(message)
    return total


def _items(value: Any) -> list[Any]:
    """A list field's items; any other value (null, object, number) is one item, or none if null."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _json_tokens(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return text_tokens(value)
    try:
        return text_tokens(orjson.dumps(value).decode())
    except TypeError:  # an integer past 64 bits, which the strict JSON reader may let through
        return text_tokens(str(value))


def _tool_tokens(tool: Any) -> int:
    if not isinstance(tool, dict):
        return _json_tokens(tool)
    total = 10 + _json_tokens(tool.get("name")) + _json_tokens(tool.get("description"))
    return total + _json_tokens(tool.get("input_schema"))


def _content_tokens(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return text_tokens(content)
    if isinstance(content, list):
        return sum(_block_tokens(block) for block in content)
    return _json_tokens(content)


def _block_tokens(block: Any) -> int:
    if isinstance(block, str):
        return text_tokens(block)
    if not isinstance(block, dict):
        return _json_tokens(block)
    kind = block.get("type")
    if kind == "text":
        return _json_tokens(block.get("text"))
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "document":
        return _document_tokens(block)
    if kind == "thinking":
        return _json_tokens(block.get("thinking"))
    if kind == "redacted_thinking":
        return _json_tokens(block.get("data"))
    if kind in ("tool_use", "server_tool_use"):
        return 5 + _json_tokens(block.get("name")) + _json_tokens(block.get("input", {}))
    if kind in ("tool_result", "mid_conv_system", "search_result"):
        return 5 + _content_tokens(block.get("content"))
    return _json_tokens(block)


def _document_tokens(block: dict[str, Any]) -> int:
    source = block.get("source")
    extra = _json_tokens(block.get("title")) + _json_tokens(block.get("context"))
    if not isinstance(source, dict):
        return extra + PDF_PAGE_TOKENS + _json_tokens(source)
    kind, data = source.get("type"), source.get("data")
    if kind == "text":
        return extra + _json_tokens(data)
    if kind == "content":
        return extra + _content_tokens(source.get("content"))
    if kind == "base64" and isinstance(data, str):
        pages = max(1, (len(data) * 3 // 4) // PDF_BYTES_PER_PAGE)
        return extra + pages * PDF_PAGE_TOKENS
    return extra + PDF_PAGE_TOKENS
