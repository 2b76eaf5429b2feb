"""Text to chunks: windows of tokens with overlap (OpenAI's `static` strategy and defaults)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from parley.core.errors import invalid_request

DEFAULT_MAX_TOKENS = 800
DEFAULT_OVERLAP = 400


@dataclass(frozen=True, slots=True)
class Chunking:
    max_tokens: int = DEFAULT_MAX_TOKENS
    overlap: int = DEFAULT_OVERLAP

    def as_json(self) -> dict[str, Any]:
        return {
            "type": "static",
            "static": {"max_chunk_size_tokens": self.max_tokens, "chunk_overlap_tokens": self.overlap},
        }


def parse_chunking(value: Any) -> Chunking:
    """OpenAI's `chunking_strategy`: absent or `auto` (800/400), or `static` with its two sizes."""
    if value is None or (isinstance(value, dict) and value.get("type") == "auto"):
        return Chunking()
    static = value.get("static") if isinstance(value, dict) and value.get("type") == "static" else None
    if not isinstance(static, dict):
        raise invalid_request('chunking_strategy: must be {"type": "auto"} or {"type": "static", ...}')
    size, overlap = static.get("max_chunk_size_tokens"), static.get("chunk_overlap_tokens")
    if not isinstance(size, int) or not 100 <= size <= 4096:
        raise invalid_request("chunking_strategy.static.max_chunk_size_tokens: an integer from 100 to 4096")
    if not isinstance(overlap, int) or not 0 <= overlap <= size // 2:
        raise invalid_request(
            "chunking_strategy.static.chunk_overlap_tokens: an integer from 0 to half the chunk size"
        )
    return Chunking(size, overlap)


def chunk_text(text: str, spans: Callable[[str], list[tuple[int, int]]], chunking: Chunking) -> list[str]:
    """Windows of `max_tokens` tokens, each starting `max_tokens - overlap` tokens after the last."""
    offsets = spans(text)
    if not offsets:
        return [text] if text.strip() else []
    step = chunking.max_tokens - chunking.overlap
    out = []
    for start in range(0, len(offsets), step):
        window = offsets[start : start + chunking.max_tokens]
        piece = text[window[0][0] : window[-1][1]].strip()
        if piece:
            out.append(piece)
        if start + chunking.max_tokens >= len(offsets):
            break
    return out
