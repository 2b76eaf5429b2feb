"""Everything parley knows about one client request, from arrival to the spend log.

Fields that several modules read are typed attributes here. State that belongs to one filter
(its reservation, its cache key) lives in `ctx.state` under a typed `StateKey` the filter owns,
so no module reads another's state through a string.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from parley.core.deployment import Deployment, Target
from parley.core.usage import Usage

if TYPE_CHECKING:
    from parley.core.usage import AnthropicStreamSniffer

T = TypeVar("T")


def new_request_id() -> str:
    """A unique id, in time order: `req_`, the Unix time in milliseconds (12 hex digits), then 80
    random bits (20 hex digits), 128 bits in all like a UUIDv7.

    Time order keeps the spend log's primary-key index appending at its right edge: random ids put
    each new row in a different leaf page of that index, which SQLite then writes to its WAL and
    back (a 500-row batch cost 24.5 µs of CPU per row with random ids, 11.4 with these). Not a
    secret, so no system call for randomness (it showed at 2.5% of CPU)."""
    return "req_" + ((int(time.time() * 1000) << 80) | random.getrandbits(80)).to_bytes(16, "big").hex()


class StateKey(Generic[T]):
    """A typed slot in `RequestContext.state`; the module that owns the state creates the key."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"StateKey({self.name!r})"


class FilterState(dict[StateKey[Any], Any]):
    """Per-request state of filters, keyed by `StateKey` objects (identity, not strings). A dict, so
    `get` and `put` are the dict's own C methods (several filters use them on every request); the
    type checker sees them typed by the key."""

    __slots__ = ()

    if TYPE_CHECKING:

        def get(self, key: StateKey[T]) -> T | None: ...  # type: ignore[override]

        def put(self, key: StateKey[T], value: T) -> None: ...

        def pop(self, key: StateKey[T]) -> T | None: ...  # type: ignore[override]

    else:
        put = dict.__setitem__

        def pop(self, key):
            return dict.pop(self, key, None)


@dataclass(frozen=True, slots=True)
class RetrievalNote:
    """The vector stores searched for a request and how many chunks were added to it."""

    stores: tuple[str, ...]
    chunks: int


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """Rate limits that apply to one subject (a key, user, team, customer, or key+model)."""

    scope: str  # "key", "user", "team", "customer", "key_model"
    id: str
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None


@dataclass(frozen=True, slots=True)
class GuardrailAction:
    """One thing a guardrail did to a request (for metrics and the spend log)."""

    guardrail: str  # its guardrail_name
    action: str  # mask, redact, block, found, flag, error ...
    target: str  # the PII entity, the content rule, or the injection rule
    count: int = 1


@dataclass(slots=True, eq=False)
class RequestContext:
    api: str  # the API the client called: "anthropic" or "openai"
    route: str  # e.g. "/v1/messages"
    headers: Mapping[str, str]
    request_id: str = field(default_factory=new_request_id)
    started: float = field(default_factory=time.perf_counter)
    started_at: float = field(default_factory=time.time)
    key: str | None = None  # the credential the client presented
    auth: object = None  # what the authenticator made of it: "master", a KeyRecord, or None
    allowed_models: tuple[str, ...] = ()  # the models the key may use (empty: every model)
    model: str | None = None  # as requested
    batch_models: list[str] = field(default_factory=list)  # the models a batch's items ask for
    targets: list[Target] = field(default_factory=list)  # the deployments that may serve it
    deployment: Deployment | None = None  # the one that served it
    upstream_model: str | None = None
    response_model: str | None = None  # the model the upstream says answered (JSON replies)
    stop_reason: str | None = None  # Anthropic's stop_reason of a whole reply (streams: the sniffer's)
    stream: bool = False
    status: int = 0
    error_type: str | None = None
    error_message: str | None = None
    usage: Usage = field(default_factory=Usage)
    usage_by_model: dict[str, Usage] = field(default_factory=dict)  # batch results, per model
    stream_sniffer: AnthropicStreamSniffer | None = None  # a native stream's usage reader
    input_estimate: int | None = None  # input tokens counted locally (for broken streams)
    cost: float | None = None  # USD, computed once when the call is over
    spend_id: str | None = None  # the spend row's id when not the request id (batch results)
    price_tier: str = "standard"  # or "batch"
    price_factor: float = 1.0  # the share of the price billed (gateway-run batches' discount)
    first_byte_at: float | None = None
    ended_at: float | None = None
    end_user: str | None = None
    session_id: str | None = None
    tags: list[str] = field(default_factory=list)
    cc_version: str | None = None  # Claude Code's attribution line: its version and entrypoint
    cc_entrypoint: str | None = None
    litellm_metadata: object = None  # the body's `litellm_metadata`, removed before sending
    cache_controls: object = None  # the body's top-level `cache` object, removed before sending
    cache_hit: bool = False
    retrieval: RetrievalNote | None = None  # what retrieval (RAG) added to the request
    body_changed: bool = False  # a filter edited the parsed body: re-serialize before sending
    attempts: int = 0
    dropped: list[str] = field(default_factory=list)  # request fields the backend could not take
    invalid_tool_arguments: list[str] = field(default_factory=list)  # backend tool args not JSON
    response_headers: dict[str, str] = field(default_factory=dict)  # extra x-parley-* headers
    limits: list[LimitSpec] = field(default_factory=list)  # filled by auth, enforced by rate limits
    guardrail_actions: list[GuardrailAction] = field(default_factory=list)
    guardrail_summary: str | None = None  # e.g. "pii:masked=3,content:pass" (header and spend log)
    state: FilterState = field(default_factory=FilterState)
    finished: bool = False  # the filters' on_done hooks have run

    @property
    def latency_ms(self) -> float:
        end = self.ended_at if self.ended_at is not None else time.perf_counter()
        return (end - self.started) * 1000.0

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_byte_at is None else (self.first_byte_at - self.started) * 1000.0

    def mark_first_byte(self) -> None:
        if self.first_byte_at is None:
            self.first_byte_at = time.perf_counter()
