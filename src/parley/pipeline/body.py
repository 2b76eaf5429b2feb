"""Reading and checking request bodies without whole-body validation."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from parley.core.errors import invalid_request

# Keys the gateway decides on (access, budget): a body that names one twice is refused, since what
# is forwarded byte for byte must mean to the upstream what it meant to our checks.
_DECIDING_KEYS = re.compile(rb'"(?:model|max_tokens|max_completion_tokens|stream)"')
_DECIDING_NAMES = (b'"model"', b'"max_tokens"', b'"max_completion_tokens"', b'"stream"')
_SMALL_BODY = 4096  # below this, four `bytes.find` scans beat one regex scan (above, the regex wins)


def parse_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object: valid UTF-8 JSON (no lone surrogates), no repeated deciding key."""
    if not raw:
        raise invalid_request("request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise invalid_request(f"request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise invalid_request("request body must be a JSON object")
    if _may_repeat_keys(raw):
        _refuse_repeated_keys(raw)
    return body


def _may_repeat_keys(raw: bytes) -> bool:
    """One scan for the deciding keys; any of them seen twice (at any depth) needs a closer look."""
    if len(raw) < _SMALL_BODY:
        for name in _DECIDING_NAMES:
            at = raw.find(name)
            if at >= 0 and raw.find(name, at + len(name)) >= 0:
                return True
        return False
    seen: set[bytes] = set()
    for match in _DECIDING_KEYS.finditer(raw):
        key = match.group()
        if key in seen:
            return True
        seen.add(key)
    return False


def _refuse_repeated_keys(raw: bytes) -> None:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [name for name, _ in items]
        if len(names) != len(set(names)):
            repeated = sorted({n for n in names if names.count(n) > 1})
            raise invalid_request(f"request body repeats the key(s) {', '.join(repeated)}; send each once")
        return dict(items)

    json.loads(raw, object_pairs_hook=pairs)


def check_model_and_messages(body: dict[str, Any], *, non_empty: bool = False) -> None:
    """`model` a non-empty string and `messages` a list: what every API needs to route a request."""
    model = body.get("model")
    if model is None:
        raise invalid_request("model: Field required", param="model")
    if not isinstance(model, str) or not model:
        raise invalid_request("model: Input should be a valid string", param="model")
    messages = body.get("messages")
    if messages is None:
        raise invalid_request("messages: Field required", param="messages")
    if not isinstance(messages, list) or (non_empty and not messages):
        raise invalid_request(
            "messages: Input should be a " + ("non-empty " if non_empty else "valid ") + "list",
            param="messages",
        )


def check_messages_request(body: dict[str, Any], *, needs_max_tokens: bool = True) -> None:
    """The few checks a gateway must make itself; the backend validates the rest."""
    check_model_and_messages(body)
    if needs_max_tokens:
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise invalid_request("max_tokens: Field required", param="max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
            raise invalid_request(
                "max_tokens: Input should be a valid non-negative integer", param="max_tokens"
            )
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid_request("stream: Input should be a valid boolean", param="stream")


def check_chat_request(body: dict[str, Any]) -> None:
    """The checks the gateway makes itself; the backend (or the translator) validates the rest."""
    check_model_and_messages(body, non_empty=True)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid_request("stream: Input should be a valid boolean", param="stream")
