"""Gemini `GenerateContentResponse` -> Anthropic Message (whole replies; the stream reuses the parts).

Parts: thought text -> `thinking` (its `thoughtSignature` as the signature), text -> `text`,
`functionCall` -> `tool_use` (the signature rides in the id, see `ids`). A signature on a text
part is left out: Gemini validates only the function calls' (and an extra block after the text
would be what clients such as `claude -p` take as the answer).
Finish reasons: STOP -> end_turn (tool_use when calls were made), MAX_TOKENS -> max_tokens, the
safety family -> refusal. Usage: Gemini's prompt count includes cached tokens; thinking tokens
are billed as output.
"""

from __future__ import annotations

from typing import Any

import orjson

from parley.translate.gemini.ids import thinking_signature, tool_use_id

REFUSALS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "LANGUAGE",
    }
)


def stop_reason(finish: str | None, used_tools: bool) -> str:
    if finish == "MAX_TOKENS":
        return "max_tokens"
    if finish in REFUSALS:
        return "refusal"
    return "tool_use" if used_tools else "end_turn"


def anthropic_usage(meta: Any) -> dict[str, int]:
    """Anthropic usage from Gemini's `usageMetadata` (cached tokens are cache reads)."""
    meta = meta if isinstance(meta, dict) else {}
    prompt = int(meta.get("promptTokenCount") or 0) + int(meta.get("toolUsePromptTokenCount") or 0)
    cached = int(meta.get("cachedContentTokenCount") or 0)
    output = int(meta.get("candidatesTokenCount") or 0) + int(meta.get("thoughtsTokenCount") or 0)
    return {
        "input_tokens": max(0, prompt - cached),
        "output_tokens": output,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def part_blocks(part: Any) -> list[dict[str, Any]]:
    """The Anthropic blocks one Gemini part stands for (none for an empty text part)."""
    if not isinstance(part, dict):
        return []
    signature = part.get("thoughtSignature")
    call = part.get("functionCall")
    if isinstance(call, dict):
        args = call.get("args")
        return [
            {
                "type": "tool_use",
                "id": tool_use_id(signature),
                "name": str(call.get("name", "")),
                "input": args if isinstance(args, dict) else {},
            }
        ]
    text = part.get("text")
    if part.get("thought"):
        return [{"type": "thinking", "thinking": text or "", "signature": thinking_signature(signature)}]
    if not isinstance(text, str):
        return []
    return [{"type": "text", "text": text}] if text else []  # a text part's signature is optional


def first_candidate(response: dict[str, Any]) -> dict[str, Any]:
    candidates = response.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        return candidates[0]
    return {}


def to_anthropic_message(response: dict[str, Any], model: str) -> dict[str, Any]:
    candidate = first_candidate(response)
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    blocks: list[dict[str, Any]] = []
    for part in parts if isinstance(parts, list) else ():
        for block in part_blocks(part):
            last = blocks[-1] if blocks else None
            if last and block["type"] == "text" == last["type"]:
                last["text"] += block["text"]  # Gemini may split one answer into several parts
            elif last and block["type"] == "thinking" == last["type"] and not last["signature"]:
                last["thinking"] += block["thinking"]  # one thought, its signature on the last part
                last["signature"] = block["signature"]
            else:
                blocks.append(block)
    finish = candidate.get("finishReason")
    feedback = response.get("promptFeedback")
    if not candidate and isinstance(feedback, dict) and feedback.get("blockReason"):
        finish = "SAFETY"  # the prompt itself was blocked: no candidate at all
    return {
        "id": "msg_" + str(response.get("responseId") or "gemini"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason(finish, any(b["type"] == "tool_use" for b in blocks)),
        "stop_sequence": None,
        "usage": anthropic_usage(response.get("usageMetadata")),
    }


def tool_arguments(block: dict[str, Any]) -> str:
    return orjson.dumps(block.get("input") or {}).decode()
