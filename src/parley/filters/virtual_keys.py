"""Virtual keys: the master key or a stored `sk-…` key, checked from an in-process cache.

`VirtualKeyAuth` (before the body is read): unknown, blocked or expired key → 401; fills
`ctx.auth` with the KeyRecord and `ctx.limits` with the key/user/team limits.
`VirtualKeyPolicy` (after parsing): model allow-lists → 403 `permission_error`; the end user,
session and tags of the request; customer limits; strips `litellm_metadata` from the body.
"""

from __future__ import annotations

import fnmatch
import functools
import hmac
import time
from typing import Any

from parley.core.context import LimitSpec, RequestContext, StateKey
from parley.core.errors import GatewayError
from parley.core.stream import UpstreamReply
from parley.pipeline.filter import Authenticator, Filter, Phase, client_key
from parley.spend.service import StoreService
from parley.store.records import KeyRecord, Subject, hash_key

_ALL_MODELS = frozenset({"*", "all-proxy-models"})


def _limit(scope: str, ident: str, rec: Any) -> LimitSpec | None:
    if rec.rpm_limit is None and rec.tpm_limit is None and rec.max_parallel_requests is None:
        return None
    return LimitSpec(scope, ident, rec.rpm_limit, rec.tpm_limit, rec.max_parallel_requests)


def model_allowed(allowed: tuple[str, ...], model: str) -> bool:
    """Empty list = every model; entries may hold `*` wildcards."""
    if not allowed:
        return True
    for pattern in allowed:
        if pattern in _ALL_MODELS or pattern == model:
            return True
        if "*" in pattern and fnmatch.fnmatchcase(model, pattern):
            return True
    return False


# How many presented keys keep their hash at hand (a client sends the same key on every request).
HASHED_KEYS = 1024


class VirtualKeyAuth(Authenticator):
    def __init__(self, master_key: str | None, service: StoreService) -> None:
        super().__init__(master_key)
        self.service = service
        # sha256 of a key seen lately, without hashing it again; bounded, never logged or listed
        self._hash = functools.lru_cache(maxsize=HASHED_KEYS)(hash_key)

    @property
    def enabled(self) -> bool:
        return True

    async def authenticate(self, ctx: RequestContext) -> None:
        key = ctx.key = client_key(ctx.headers)
        if key is None:
            if self.master_key is None:
                return
            raise GatewayError(
                401, "missing API key: send x-api-key or Authorization: Bearer", "authentication_error"
            )
        if self._master is not None and hmac.compare_digest(key.encode(), self._master):
            ctx.auth = "master"
            return
        record = await self.service.cache.key(self._hash(key))
        if record is None:
            raise GatewayError(401, "invalid x-api-key", "authentication_error")
        check_key(record)
        ctx.auth = record
        ctx.allowed_models = record.models
        limits = [_limit("key", record.token, record)]
        if record.user is not None:
            limits.append(_limit("user", record.user.id, record.user))
        if record.team is not None:
            limits.append(_limit("team", record.team.id, record.team))
        ctx.limits.extend(spec for spec in limits if spec is not None)


def check_key(record: KeyRecord) -> None:
    if record.blocked:
        raise GatewayError(401, f"key {record.label} is blocked", "authentication_error")
    if record.expires is not None and record.expires <= time.time():
        raise GatewayError(401, f"key {record.label} has expired", "authentication_error")
    if record.team is not None and record.team.blocked:
        raise GatewayError(
            401, f"team {record.team.id!r} of key {record.label} is blocked", "authentication_error"
        )


# The end user's record, when the request names one the database knows (read by budgets).
CUSTOMER: StateKey[Subject] = StateKey("customer")


class VirtualKeyPolicy(Filter):
    phase = Phase.AUTH

    def __init__(self, service: StoreService) -> None:
        self.service = service

    async def on_request(self, ctx: RequestContext, body: dict[str, Any] | None) -> UpstreamReply | None:
        record = ctx.auth if isinstance(ctx.auth, KeyRecord) else None
        models = named_models(ctx)
        if record is not None:
            if record.tags:
                ctx.tags.extend(tag for tag in record.tags if tag not in ctx.tags)
            for model in models:
                check_models(record, model)
        if ctx.end_user:
            customer = await self.service.cache.customer(ctx.end_user)
            if customer is not None:
                if record is not None:
                    check_end_user(record, customer)
                ctx.state.put(CUSTOMER, customer)
                check_customer(customer, models)
                spec = _limit("customer", customer.id, customer)
                if spec is not None:
                    ctx.limits.append(spec)
        return None


def named_models(ctx: RequestContext) -> list[str]:
    """Every model the request names: the one it asks for and those of its batch items (a call that
    names none, like listing models, is not a model use)."""
    names = [ctx.model] if ctx.model else []
    return names + [m for m in ctx.batch_models if m not in names]


def check_models(record: KeyRecord, model: str) -> None:
    if not model_allowed(record.models, model):
        raise GatewayError(
            403,
            f"key {record.label} is not allowed to use model {model!r}; allowed: {', '.join(record.models)}",
            "permission_error",
        )
    team = record.team
    if team is not None and not model_allowed(team.models, model):
        raise GatewayError(
            403,
            f"team {team.id!r} is not allowed to use model {model!r}; allowed: {', '.join(team.models)}",
            "permission_error",
        )


def check_end_user(record: KeyRecord, customer: Subject) -> None:
    """A key charges a managed end user (one an admin gave a budget, limits, models or a block)
    only when its `end_users` names them or is `["*"]`; anyone may name an unmanaged end user,
    which only labels spend."""
    if customer.managed and "*" not in record.end_users and customer.id not in record.end_users:
        raise GatewayError(
            403,
            f"key {record.label} may not act for end user {customer.id!r}; an admin can allow it "
            "with the key's end_users field",
            "permission_error",
        )


def check_customer(customer: Subject, models: list[str]) -> None:
    if customer.blocked:
        raise GatewayError(403, f"end user {customer.id!r} is blocked", "permission_error")
    for model in models:
        if not model_allowed(customer.models, model):
            raise GatewayError(
                403, f"end user {customer.id!r} is not allowed to use model {model!r}", "permission_error"
            )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
