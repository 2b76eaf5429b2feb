"""The semantic response cache (`cache_params.type: semantic`, or `redis-semantic` to share it).

A request can be answered from the cache when everything but its last user text matches exactly
(model, system, tools, earlier turns, sampling parameters, betas; the same cache key as the exact
cache, computed with that text left out) and, within that bucket, the last user text's embedding
(the built-in model) has cosine similarity >= `similarity_threshold` with a stored one. Buckets are
scoped to the key (default), the team, or everyone (`semantic_scope`). Requests whose last turn
carries tool results, images or documents are not looked up unless `semantic_tool_results` (tool
results only). A bucket keeps its newest `BUCKET_SIZE` entries; two instances storing into the same
bucket at once may drop one of the two entries (it is a cache).
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from parley.config import CacheParams
from parley.core.context import RequestContext
from parley.core.stream import UpstreamReply
from parley.core.tasks import Tasks
from parley.core.usage import Usage
from parley.filters.cache.filter import (
    HEADER,
    LOOKUP,
    ROUTES,
    Lookup,
    ResponseCache,
    controls_of,
    model_allows_cache,
)
from parley.filters.cache.key import cache_key
from parley.filters.cache.store import CacheStore
from parley.providers.local_embed import LocalEmbedder
from parley.spend.pricing import PriceTable
from parley.store.records import KeyRecord

if TYPE_CHECKING:
    import numpy as np

BUCKET_SIZE = 32
SCORE_HEADER = "x-parley-cache-similarity"
SAVED_HEADER = "x-parley-cache-saved-usd"


@dataclass(slots=True)
class _SemanticLookup(Lookup):
    vector: np.ndarray | None = None
    text: str = ""


class SemanticCache(ResponseCache):
    def __init__(
        self,
        store: CacheStore,
        params: CacheParams,
        tasks: Tasks,
        embedder: LocalEmbedder,
        prices: PriceTable,
    ) -> None:
        super().__init__(store, params.ttl, tasks)
        self.params = params
        self.embedder = embedder
        self.prices = prices

    async def on_request(self, ctx: RequestContext, body: dict[str, Any] | None) -> UpstreamReply | None:
        if body is None or ctx.route not in ROUTES or ctx.api != "anthropic" or not model_allows_cache(ctx):
            return None
        if not self._opted_in(ctx):
            return None
        text = last_user_text(body, self.params.semantic_tool_results)
        if text is None:
            return None
        bucket = self._bucket(ctx, body)
        lookup = _SemanticLookup(bucket, controls_of(ctx), text=text)
        ctx.state.put(LOOKUP, lookup)
        ctx.response_headers[HEADER] = "miss"
        lookup.vector = (await self.embedder.aembed([text])).vectors[0]
        if lookup.controls.get("no-cache"):
            return None
        entry, score = best_match(
            await self._entries(bucket), lookup.vector, self.params.similarity_threshold
        )
        if entry is None:
            return None
        lookup.hit = ctx.cache_hit = True
        ctx.usage = Usage()
        ctx.response_headers[HEADER] = "hit"
        ctx.response_headers[SCORE_HEADER] = f"{score:.4f}"
        ctx.response_headers[SAVED_HEADER] = f"{self._saved(ctx, entry):.6f}"
        return self.replay(ctx, dict(entry["m"], id="msg_" + secrets.token_hex(12)))

    def _opted_in(self, ctx: RequestContext) -> bool:
        """On for every request with `semantic_default`, else for keys whose metadata or models whose
        params say `semantic_cache: true`; either may also say false to stay out."""
        record = ctx.auth if isinstance(ctx.auth, KeyRecord) else None
        choices = [record.metadata.get("semantic_cache")] if record is not None else []
        choices += [t.deployment.params.get("semantic_cache") for t in ctx.targets[:1]]
        if False in choices:
            return False
        return self.params.semantic_default or True in choices

    def _bucket(self, ctx: RequestContext, body: dict[str, Any]) -> str:
        record = ctx.auth if isinstance(ctx.auth, KeyRecord) else None
        scope = self.params.semantic_scope
        if scope == "global":
            owner = "*"
        elif scope == "team" and record is not None and record.team_id:
            owner = "team:" + record.team_id
        else:
            owner = "key:" + (record.token if record is not None else str(ctx.auth))
        messages = body["messages"]
        rest = dict(body, messages=[*messages[:-1], {"role": "user", "content": "\x00semantic"}])
        return "sem:" + cache_key(owner, rest, ctx.headers)

    async def _entries(self, bucket: str) -> list[dict[str, Any]]:
        raw = await self.store.get(bucket)
        if raw is None:
            return []
        try:
            entries = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return []
        now = time.time()
        return (
            [e for e in entries if isinstance(e, dict) and e.get("e", 0) > now]
            if isinstance(entries, list)
            else []
        )

    def _saved(self, ctx: RequestContext, entry: dict[str, Any]) -> float:
        usage = Usage()
        usage.update(entry["m"].get("usage"))
        target = ctx.targets[0] if ctx.targets else None
        price = self.prices.for_deployment(
            target.deployment if target else None, target.upstream_model if target else None
        )
        return price.cost(usage)

    def _store(self, lookup: Lookup, message: dict[str, Any]) -> None:
        if not message.get("stop_reason") or not isinstance(lookup, _SemanticLookup) or lookup.vector is None:
            return
        ttl = float(lookup.controls.get("ttl") or self.ttl)
        entry = {
            "v": base64.b64encode(lookup.vector.astype("<f2").tobytes()).decode(),
            "m": message,
            "e": time.time() + ttl,
        }
        self.tasks.spawn(self._append(lookup.key, entry, ttl))

    async def _append(self, bucket: str, entry: dict[str, Any], ttl: float) -> None:
        entries = [*(await self._entries(bucket))[-(BUCKET_SIZE - 1) :], entry]
        await self.store.set(
            bucket, orjson.dumps(entries), max(ttl, max(e["e"] for e in entries) - time.time())
        )


def last_user_text(body: dict[str, Any], tool_results: bool) -> str | None:
    """The text of the last (user) message, or None when it has none or carries other content."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return None
    last = messages[-1]
    if last.get("role") != "user":
        return None
    content = last.get("content")
    if isinstance(content, str):
        return content or None
    if not isinstance(content, list):
        return None
    texts = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif not (kind == "tool_result" and tool_results):
            return None
    return "\n".join(texts) or None


def best_match(
    entries: list[dict[str, Any]], vector: np.ndarray, threshold: float
) -> tuple[dict[str, Any] | None, float]:
    """The stored entry most similar to `vector`, if at least `threshold`."""
    import numpy as np

    best, best_score = None, -1.0
    for entry in entries:
        try:
            stored = np.frombuffer(base64.b64decode(entry["v"]), dtype="<f2").astype(np.float32)
        except (KeyError, ValueError, TypeError):
            continue
        if stored.shape != vector.shape or not isinstance(entry.get("m"), dict):
            continue
        score = float(stored @ vector)
        if score > best_score:
            best, best_score = entry, score
    return (best, best_score) if best is not None and best_score >= threshold else (None, best_score)
