"""Everything parley knows about one client request, from arrival to the spend log."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from parley.core.usage import Usage


def new_request_id() -> str:
    """A unique id; not a secret, so no system call for randomness (it showed at 2.5% of CPU)."""
    return f"req_{random.getrandbits(96):024x}"


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """Rate limits that apply to one subject (a key, user, team, customer, or key+model)."""

    scope: str  # "key", "user", "team", "customer", "key_model"
    id: str
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None


@dataclass(slots=True, eq=False)
class RequestContext:
    api: str  # the API the client called: "anthropic" or "openai"
    route: str  # e.g. "/v1/messages"
    headers: Mapping[str, str]
    request_id: str = field(default_factory=new_request_id)
    started: float = field(default_factory=time.perf_counter)
    started_at: float = field(default_factory=time.time)
    key: str | None = None  # the credential the client presented
    auth: Any = None  # what the authenticator made of it (e.g. a virtual key record)
    model: str | None = None  # as requested
    deployment: Any = None  # the Deployment that served it
    upstream_model: str | None = None
    stream: bool = False
    status: int = 0
    error_type: str | None = None
    error_message: str | None = None
    usage: Usage = field(default_factory=Usage)
    first_byte_at: float | None = None
    ended_at: float | None = None
    end_user: str | None = None
    session_id: str | None = None
    tags: list[str] = field(default_factory=list)
    cache_hit: bool = False
    body_changed: bool = False  # a policy edited the parsed body: re-serialize before sending
    attempts: int = 0
    dropped: list[str] = field(default_factory=list)  # request fields the backend could not take
    response_headers: dict[str, str] = field(default_factory=dict)  # extra x-parley-* headers
    limits: list[LimitSpec] = field(default_factory=list)  # filled by auth, enforced by rate limits
    extra: dict[str, Any] = field(default_factory=dict)  # room for policies (reservations, ...)

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
