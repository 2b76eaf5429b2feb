"""The cache key: a hash of the normalized request.

Everything that shapes the reply is in it (model, messages, system, tools, tool_choice, sampling
params, max_tokens, thinking, ... and the anthropic-beta header); nothing that only identifies the
caller is (metadata, the key, litellm_metadata, the cache controls) and neither is `stream`, so a
streamed request and a plain one share an entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

IGNORED = frozenset({"metadata", "stream", "litellm_metadata", "cache", "user", "service_tier"})


def cache_key(api: str, body: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    normalized = {k: v for k, v in body.items() if k not in IGNORED}
    beta = headers.get("anthropic-beta")
    if beta:
        normalized["__beta"] = ",".join(sorted(b.strip() for b in beta.split(",") if b.strip()))
    digest = hashlib.sha256(orjson.dumps(normalized, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{api}:{digest}"
