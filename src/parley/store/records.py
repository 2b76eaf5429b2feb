"""What the request path needs to know about a key, user, team or customer, read in one go."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.store import tables as t


def hash_key(key: str) -> str:
    """The stored form of a virtual key: sha256 hex. The key itself is never stored or logged."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Subject:
    """A user, team or customer: something a budget and limits can apply to."""

    kind: str  # "user", "team", "customer"
    id: str
    max_budget: float | None = None
    budget_duration: str | None = None
    budget_reset_at: float | None = None
    spend: float = 0.0
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel_requests: int | None = None
    models: tuple[str, ...] = ()
    blocked: bool = False
    alias: str | None = None
    guardrails: tuple[str, ...] = ()  # guardrail names attached (teams)

    @property
    def managed(self) -> bool:
        """Set up by an admin with a budget, limits, models or a block (a customer row created by
        a first spend has none of these)."""
        return bool(
            self.max_budget is not None
            or self.rpm_limit is not None
            or self.tpm_limit is not None
            or self.max_parallel_requests is not None
            or self.models
            or self.blocked
        )


@dataclass(frozen=True, slots=True)
class KeyRecord:
    token: str  # sha256 hex
    key_name: str
    key_alias: str | None
    user_id: str | None
    team_id: str | None
    models: tuple[str, ...]
    max_budget: float | None
    budget_duration: str | None
    budget_reset_at: float | None
    budget_mode: str
    spend: float
    rpm_limit: int | None
    tpm_limit: int | None
    max_parallel_requests: int | None
    tags: tuple[str, ...]
    expires: float | None
    blocked: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    end_users: tuple[str, ...] = ()  # managed end users the key may charge; "*" = any
    user: Subject | None = None
    team: Subject | None = None
    guardrails: tuple[str, ...] = ()  # guardrail names attached to the key

    @property
    def label(self) -> str:
        return self.key_alias or self.key_name


def _subject(kind: str, row: Any, alias: str | None = None) -> Subject:
    return Subject(
        kind=kind,
        id=row[0] if kind != "team" else row.team_id,
        max_budget=row.max_budget,
        budget_duration=row.budget_duration,
        budget_reset_at=row.budget_reset_at,
        spend=row.spend or 0.0,
        rpm_limit=row.rpm_limit,
        tpm_limit=row.tpm_limit,
        max_parallel_requests=row.max_parallel_requests,
        models=tuple(row.models or ()),
        blocked=bool(row.blocked),
        alias=alias,
        guardrails=tuple(row._mapping.get("guardrails") or ()),
    )


async def load_key(engine: AsyncEngine, token: str) -> KeyRecord | None:
    """The key with hash `token` and its user and team, or None."""
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(t.keys).where(t.keys.c.token == token))).first()
        if row is None:
            return None
        user = team = None
        if row.user_id:
            u = (await conn.execute(sa.select(t.users).where(t.users.c.user_id == row.user_id))).first()
            user = _subject("user", u, u.user_alias) if u is not None else None
        if row.team_id:
            tm = (await conn.execute(sa.select(t.teams).where(t.teams.c.team_id == row.team_id))).first()
            team = _subject("team", tm, tm.team_alias) if tm is not None else None
    return KeyRecord(
        token=row.token,
        key_name=row.key_name,
        key_alias=row.key_alias,
        user_id=row.user_id,
        team_id=row.team_id,
        models=tuple(row.models or ()),
        max_budget=row.max_budget,
        budget_duration=row.budget_duration,
        budget_reset_at=row.budget_reset_at,
        budget_mode=row.budget_mode or "strict",
        spend=row.spend or 0.0,
        rpm_limit=row.rpm_limit,
        tpm_limit=row.tpm_limit,
        max_parallel_requests=row.max_parallel_requests,
        tags=tuple(row.tags or ()),
        expires=row.expires,
        blocked=bool(row.blocked),
        metadata=dict(row.metadata or {}),
        end_users=tuple(row.end_users or ()),
        user=user,
        team=team,
        guardrails=tuple(row.guardrails or ()),
    )


async def load_customer(engine: AsyncEngine, user_id: str) -> Subject | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(t.customers).where(t.customers.c.user_id == user_id))).first()
    return _subject("customer", row, row.alias) if row is not None else None


async def load_spend(engine: AsyncEngine, kind: str, subject_id: str) -> tuple[float, float | None]:
    """(spend, budget_reset_at) of one subject as stored; (0, None) when absent."""
    table, id_col = t.SUBJECTS[kind]
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(table.c.spend, table.c.budget_reset_at).where(table.c[id_col] == subject_id)
            )
        ).first()
    return (row.spend or 0.0, row.budget_reset_at) if row is not None else (0.0, None)
