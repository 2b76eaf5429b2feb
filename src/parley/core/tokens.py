"""Local token estimate for backends without a count_tokens endpoint.

Method: about four characters per token for all text the model reads (system, every message block,
tool names, descriptions and schemas), plus fixed costs: 3 per request, 4 per message, 10 per tool,
1,600 per image (Anthropic's cost for a ~1.15 megapixel image), 1,500 per PDF page (a page is
counted per 50 KB of decoded PDF, at least one). It overestimates slightly for code and
underestimates for CJK text; good enough for context decisions, not billing. Budgets reserve from
`bound_request_tokens` (one token per UTF-8 byte of text), which no tokenizer exceeds for text.

The counters take any JSON: a field of the wrong type (`tools` an object, a block's `text` a
number, a document `source` a string) counts as its JSON text instead of raising, so a malformed
request gets the upstream's own 400 rather than a gateway error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

IMAGE_TOKENS = 1600
PDF_PAGE_TOKENS = 1500
PDF_BYTES_PER_PAGE = 50_000
# Added once by the upstream when a request has tools (Anthropic's tool-use system prompt is
# 159-346 tokens depending on the model and tool_choice): part of the bound, not of the estimate.
TOOLS_SYSTEM_BOUND = 600

Measure = Callable[[str], int]


def text_tokens(text: str) -> int:
    return (len(text) + 3) // 4 if text else 0


def text_bytes(text: str) -> int:
    """An upper bound on the tokens of `text`: every token of a byte-level tokenizer covers at
    least one byte of UTF-8, so no tokenizer yields more tokens than the text has bytes."""
    return len(text.encode("utf-8", "surrogatepass"))


def count_request_tokens(body: Any, text: Measure = text_tokens) -> int:
    """Estimated input tokens of an Anthropic Messages request body (any JSON value); with
    `text=text_bytes`, the text part of the bound (see `bound_request_tokens`)."""
    if not isinstance(body, dict):
        return 3 + _json_tokens(body, text)
    total = 3 + _content_tokens(body.get("system"), text)
    for tool in _items(body.get("tools")):
        total += _tool_tokens(tool, text)
    for message in _items(body.get("messages")):
        if isinstance(message, dict):
            total += 4 + _content_tokens(message.get("content"), text)
        else:
            total += _json_tokens(message, text)
    return total


def bound_request_tokens(body: dict[str, Any]) -> int:
    """A conservative upper bound on the input tokens the upstream will count for `body`: every
    piece of text the model reads at one token per UTF-8 byte, the same fixed costs per request,
    message and tool as the estimate, images and PDF pages at their fixed costs, plus the tool-use
    system prompt when there are tools. Typical English text is about 4 bytes per token, so this is
    about 4 x the estimate for text (the same for images)."""
    tools = TOOLS_SYSTEM_BOUND if body.get("tools") else 0
    return count_request_tokens(body, text_bytes) + tools


def _items(value: Any) -> list[Any]:
    """A list field's items; any other value (null, object, number) is one item, or none if null."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _json_tokens(value: Any, text: Measure) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return text(value)
    try:
        return text(orjson.dumps(value).decode())
    except TypeError:  # an integer past 64 bits, which the strict JSON reader may let through
        return text(str(value))


def _tool_tokens(tool: Any, text: Measure) -> int:
    if not isinstance(tool, dict):
        return _json_tokens(tool, text)
    total = 10 + _json_tokens(tool.get("name"), text) + _json_tokens(tool.get("description"), text)
    return total + _json_tokens(tool.get("input_schema"), text)


def _content_tokens(content: Any, text: Measure) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return text(content)
    if isinstance(content, list):
        return sum(_block_tokens(block, text) for block in content)
    return _json_tokens(content, text)


def _block_tokens(block: Any, text: Measure) -> int:
    if isinstance(block, str):
        return text(block)
    if not isinstance(block, dict):
        return _json_tokens(block, text)
    kind = block.get("type")
    if kind == "text":
        return _json_tokens(block.get("text"), text)
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "document":
        return _document_tokens(block, text)
    if kind == "thinking":
        return _json_tokens(block.get("thinking"), text)
    if kind == "redacted_thinking":
        return _json_tokens(block.get("data"), text)
    if kind in ("tool_use", "server_tool_use"):
        return 5 + _json_tokens(block.get("name"), text) + _json_tokens(block.get("input", {}), text)
    if kind in ("tool_result", "mid_conv_system", "search_result"):
        return 5 + _content_tokens(block.get("content"), text)
    return _json_tokens(block, text)


def _document_tokens(block: dict[str, Any], text: Measure) -> int:
    source = block.get("source")
    extra = _json_tokens(block.get("title"), text) + _json_tokens(block.get("context"), text)
    if not isinstance(source, dict):
        return extra + PDF_PAGE_TOKENS + _json_tokens(source, text)
    kind, data = source.get("type"), source.get("data")
    if kind == "text":
        return extra + _json_tokens(data, text)
    if kind == "content":
        return extra + _content_tokens(source.get("content"), text)
    if kind == "base64" and isinstance(data, str):
        pages = max(1, (len(data) * 3 // 4) // PDF_BYTES_PER_PAGE)
        return extra + pages * PDF_PAGE_TOKENS
    return extra + PDF_PAGE_TOKENS
