"""Retrieval (RAG) on `/v1/messages` and `/v1/chat/completions`, phase `retrieval`.

Which vector stores a request searches, all together: the deployment's `params.vector_store_ids`
(set by the operator, usable by whoever may call the model), the key's and its team's
`metadata.vector_store_ids`, and the request's `litellm_metadata.vector_store_ids` (these must be
the caller's own: another owner's store is a 404). The last user turn's text is the query; a turn
with no text (a tool result) retrieves nothing. It runs before the guardrails: the search is local
(nothing leaves the gateway), and the chunks it adds are then masked (PII) and screened (content
policy, prompt injection) with the rest of the request before anything is sent.

The top `retrieval_top_k` chunks (deployment param, default 4) are added to the last user turn, in
front of its text: for Anthropic backends as `search_result` blocks with citations on, so Claude cites
them natively; for other backends (or an OpenAI-shaped request) as one text block of numbered sources.
Being in the last turn, they leave the cacheable prefix (system, tools, earlier turns) untouched,
so prompt caching keeps working. The reply says what was added (`x-parley-retrieval`), and so does the
spend row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from parley.core.context import RequestContext, RetrievalNote
from parley.core.errors import GatewayError
from parley.core.stream import UpstreamReply
from parley.pipeline.filter import Filter, Phase
from parley.retrieval.service import MASTER, Retrieved, VectorStores, owner_of
from parley.store.records import KeyRecord

if TYPE_CHECKING:
    from parley.retrieval.index import Hit

ROUTES = frozenset({"/v1/messages", "/v1/messages/count_tokens", "/v1/chat/completions"})
HEADER = "x-parley-retrieval"
DEFAULT_TOP_K = 4
MAX_TOP_K = 20


class RetrievalFilter(Filter):
    phase = Phase.RETRIEVAL

    def __init__(self, stores: VectorStores) -> None:
        self.stores = stores

    async def on_request(self, ctx: RequestContext, body: dict[str, Any] | None) -> UpstreamReply | None:
        if body is None or ctx.route not in ROUTES:
            return None
        trusted, own = self._store_ids(ctx)
        if not trusted and not own:
            return None
        last = _last_user(body)
        query = _text_of(last["content"]) if last is not None else ""
        if not query or last is None:
            return None
        owner = owner_of(ctx.auth)
        for ident in own:
            await self.stores.store_row(owner, ident)  # 404 unless the caller owns it
        ids = list(dict.fromkeys([*trusted, *own]))
        found = await self.stores.search(ids, query, self._top_k(ctx))
        if not found.hits:
            ctx.retrieval = RetrievalNote(tuple(ids), 0)
            return None
        native = ctx.api == "anthropic" and all(t.deployment.api == "anthropic" for t in ctx.targets)
        added = _search_results(found) if native else [_sources_text(found)]
        last["content"] = added + _blocks(last["content"])
        ctx.body_changed = True
        ctx.retrieval = RetrievalNote(tuple(ids), len(found.hits))
        ctx.response_headers[HEADER] = f"store={','.join(ids)}; chunks={len(found.hits)}"
        return None

    @staticmethod
    def _store_ids(ctx: RequestContext) -> tuple[list[str], list[str]]:
        trusted: list[str] = []
        for target in ctx.targets[:1]:
            trusted.extend(_ids(target.deployment.params.get("vector_store_ids")))
        own: list[str] = []
        record = ctx.auth if isinstance(ctx.auth, KeyRecord) else None
        if record is not None:
            trusted.extend(_ids(record.metadata.get("vector_store_ids")))
        meta = ctx.litellm_metadata
        if isinstance(meta, dict):
            own.extend(_ids(meta.get("vector_store_ids"), strict=True))
        if ctx.auth == MASTER:
            trusted, own = trusted + own, []
        return trusted, own

    @staticmethod
    def _top_k(ctx: RequestContext) -> int:
        value = ctx.targets[0].deployment.params.get("retrieval_top_k") if ctx.targets else None
        return value if isinstance(value, int) and 1 <= value <= MAX_TOP_K else DEFAULT_TOP_K


def _ids(value: Any, strict: bool = False) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return value
    if strict:
        raise GatewayError(400, "litellm_metadata.vector_store_ids: a list of ids", "invalid_request_error")
    return []


def _last_user(body: dict[str, Any]) -> dict[str, Any] | None:
    messages = body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        last = messages[-1]
        if last.get("role") == "user" and isinstance(last.get("content"), (str, list)):
            return last
    return None


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = [b.get("text") for b in content if isinstance(b, dict) and b.get("type") == "text"]
    return "\n".join(p for p in parts if isinstance(p, str))


def _blocks(content: Any) -> list[Any]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _title(found: Retrieved, hit: Hit) -> str:
    return found.filenames.get(hit.chunk.file_id) or hit.chunk.file_id


def _search_results(found: Retrieved) -> list[dict[str, Any]]:
    return [
        {
            "type": "search_result",
            "source": f"parley://files/{hit.chunk.file_id}#chunk-{hit.chunk.id}",
            "title": _title(found, hit),
            "content": [{"type": "text", "text": hit.chunk.text}],
            "citations": {"enabled": True},
        }
        for hit in found.hits
    ]


def _sources_text(found: Retrieved) -> dict[str, Any]:
    lines = ["Sources retrieved for this question (cite them by number):"]
    for n, hit in enumerate(found.hits, 1):
        lines.append(f"[{n}] {_title(found, hit)}\n{hit.chunk.text}")
    return {"type": "text", "text": "\n\n".join(lines)}
