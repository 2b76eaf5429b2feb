"""Batches and their items in the database.

An item is `queued`, then `running` under a lease (owner + expiry) while one runner works it, then
`succeeded | errored | canceled | expired` with its result. A claim takes queued items, and running
items whose lease has run out (their runner died), in one transaction (`FOR UPDATE SKIP LOCKED` on
Postgres, so instances never claim the same item); a result is written only by the lease's owner,
so an item has at most one result however many runners touched it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.store import tables as t

ACTIVE = ("in_progress", "canceling")
FINAL = ("succeeded", "errored", "canceled", "expired")
INSERT_CHUNK = 500
OPENAI = "openai"  # the kind of a `/v1/batches` batch (Anthropic's have none)


def new_batch_id(kind: str | None = None) -> str:
    return ("batch_" if kind == OPENAI else "msgbatch_") + secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class NewItem:
    custom_id: str
    model: str
    params: str  # JSON


@dataclass(frozen=True, slots=True)
class Counts:
    processing: int = 0
    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0


@dataclass(frozen=True, slots=True)
class BatchRow:
    id: str
    api_key: str | None
    team_id: str | None
    status: str
    total: int
    created_at: float
    expires_at: float
    ended_at: float | None
    cancel_initiated_at: float | None
    counts: Counts
    kind: str | None = None
    extra: Any = None  # an OpenAI batch's own fields, JSON (`batches.openai.OpenAIFields`)
    finalized_at: float | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    """An item a runner holds the lease on, with what it needs from its batch."""

    batch_id: str
    idx: int
    custom_id: str
    model: str
    params: str
    api_key: str | None
    headers: dict[str, str]
    attempts: int
    upstream_batch: str | None = None  # the native batch upstream it is in, once sent
    deployment: str | None = None
    kind: str | None = None  # the batch's kind: None (Messages) or "openai" (Chat Completions)

    @property
    def request_id(self) -> str:
        """The item's request id: its budget hold and its one spend row (idempotent on rerun)."""
        return f"{self.batch_id}_{self.idx}"


@dataclass(frozen=True, slots=True)
class ResultLine:
    idx: int
    custom_id: str
    state: str
    result: str | None


_B = t.batches
_I = t.batch_items


class BatchStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # the API's side ------------------------------------------------------------------------------
    async def create(
        self,
        owner: str | None,
        team: str | None,
        headers: dict[str, str],
        items: Sequence[NewItem],
        now: float,
        expires_at: float,
        kind: str | None = None,
        extra: Any = None,
        status: str = "in_progress",
    ) -> str:
        """A new batch; `status` "failed" (an OpenAI batch whose input did not validate) never runs."""
        batch_id = new_batch_id(kind)
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.insert(_B).values(
                    id=batch_id,
                    api_key=owner,
                    team_id=team,
                    status=status,
                    headers=headers,
                    total=len(items),
                    created_at=now,
                    expires_at=expires_at,
                    kind=kind,
                    extra=extra,
                    ended_at=now if status == "failed" else None,
                )
            )
            rows = [
                {
                    "batch_id": batch_id,
                    "idx": i,
                    "custom_id": it.custom_id,
                    "model": it.model,
                    "params": it.params,
                    "state": "queued",
                    "attempts": 0,
                }
                for i, it in enumerate(items)
            ]
            for start in range(0, len(rows), INSERT_CHUNK):
                await conn.execute(sa.insert(_I), rows[start : start + INSERT_CHUNK])
        return batch_id

    async def get(self, batch_id: str) -> BatchRow | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(_B).where(_B.c.id == batch_id))).first()
            if row is None:
                return None
            return (await self._with_counts(conn, [row]))[0]

    async def page(
        self,
        owner: str | None,
        everyone: bool,
        before_id: str | None,
        after_id: str | None,
        limit: int,
        kind: str | None = None,
        team: str | None = None,
    ) -> tuple[list[BatchRow], bool]:
        """Newest first; `after_id`: older than that batch, `before_id`: newer. (rows, has_more)
        `team`: the team's batches are listed too."""
        query = sa.select(_B).where(_B.c.kind.is_(None) if kind is None else _B.c.kind == kind)
        if not everyone:
            mine = _B.c.api_key.is_(None) if owner is None else _B.c.api_key == owner
            query = query.where(mine if team is None else sa.or_(mine, _B.c.team_id == team))
        order = (_B.c.created_at.desc(), _B.c.id.desc())
        async with self.engine.connect() as conn:
            anchor_id = before_id or after_id
            if anchor_id:
                anchor = (
                    await conn.execute(sa.select(_B.c.created_at, _B.c.id).where(_B.c.id == anchor_id))
                ).first()
                if anchor is None:
                    return [], False
                key = sa.tuple_(_B.c.created_at, _B.c.id)
                if before_id:
                    query = query.where(key > sa.tuple_(sa.literal(anchor[0]), sa.literal(anchor[1])))
                    order = (_B.c.created_at.asc(), _B.c.id.asc())
                else:
                    query = query.where(key < sa.tuple_(sa.literal(anchor[0]), sa.literal(anchor[1])))
            rows = list((await conn.execute(query.order_by(*order).limit(limit + 1))).all())
            more = len(rows) > limit
            rows = rows[:limit]
            if before_id:
                rows.reverse()
            return await self._with_counts(conn, rows), more

    async def _with_counts(self, conn: Any, rows: Sequence[Any]) -> list[BatchRow]:
        if not rows:
            return []
        ids = [r.id for r in rows]
        tallies: dict[str, dict[str, int]] = {i: {} for i in ids}
        query = (
            sa.select(_I.c.batch_id, _I.c.state, sa.func.count())
            .where(_I.c.batch_id.in_(ids))
            .group_by(_I.c.batch_id, _I.c.state)
        )
        for batch_id, state, n in (await conn.execute(query)).all():
            tallies[batch_id][state] = n
        return [_batch_row(r, tallies[r.id]) for r in rows]

    async def status(self, batch_id: str) -> tuple[str, float] | None:
        """(processing status, expires_at) of a batch; None once deleted."""
        query = sa.select(_B.c.status, _B.c.expires_at).where(_B.c.id == batch_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else (row[0], row[1])

    async def cancel(self, batch_id: str, now: float) -> None:
        """Queued items become canceled at once; running ones finish (or are canceled if their
        runner died); the batch is `canceling` until none runs."""
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(_B)
                .where(_B.c.id == batch_id, _B.c.status == "in_progress")
                .values(status="canceling", cancel_initiated_at=now)
            )
            await conn.execute(
                sa.update(_I)
                .where(_I.c.batch_id == batch_id, _I.c.state == "queued")
                .values(state="canceled", finished_at=now)
            )
        await self.sweep(now, batch_id)

    async def delete(self, batch_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(_I).where(_I.c.batch_id == batch_id))
            await conn.execute(sa.delete(_B).where(_B.c.id == batch_id))

    async def results(self, batch_id: str, after_idx: int, limit: int) -> list[ResultLine]:
        query = (
            sa.select(_I.c.idx, _I.c.custom_id, _I.c.state, _I.c.result)
            .where(_I.c.batch_id == batch_id, _I.c.idx > after_idx)
            .order_by(_I.c.idx)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [ResultLine(*row) for row in (await conn.execute(query)).all()]

    # the runner's side ---------------------------------------------------------------------------
    async def claim(self, owner: str, n: int, now: float, lease: float) -> list[Claimed]:
        """Up to `n` items of in-progress batches, oldest batch first, leased to `owner`."""
        claimable = sa.or_(_I.c.state == "queued", sa.and_(_I.c.state == "running", _I.c.lease_until < now))
        pick = (
            sa.select(_I.c.batch_id, _I.c.idx)
            .join(_B, _B.c.id == _I.c.batch_id)
            .where(_B.c.status == "in_progress", _B.c.expires_at > now, claimable)
            .order_by(_B.c.created_at, _I.c.batch_id, _I.c.idx)
            .limit(n)
        )
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                pick = pick.with_for_update(of=_I, skip_locked=True)
            keys = [(r[0], r[1]) for r in (await conn.execute(pick)).all()]
            if not keys:
                return []
            chosen = sa.tuple_(_I.c.batch_id, _I.c.idx).in_(keys)
            await conn.execute(
                sa.update(_I)
                .where(chosen, claimable)
                .values(
                    state="running", lease_owner=owner, lease_until=now + lease, attempts=_I.c.attempts + 1
                )
            )
            query = (
                sa.select(
                    _I.c.batch_id,
                    _I.c.idx,
                    _I.c.custom_id,
                    _I.c.model,
                    _I.c.params,
                    _B.c.api_key,
                    _B.c.headers,
                    _I.c.attempts,
                    _I.c.upstream_batch,
                    _I.c.deployment,
                    _B.c.kind,
                )
                .join(_B, _B.c.id == _I.c.batch_id)
                .where(chosen, _I.c.lease_owner == owner, _I.c.state == "running")
            )
            rows = (await conn.execute(query)).all()
        return [
            Claimed(r[0], r[1], r[2], r[3], r[4], r[5], dict(r[6] or {}), r[7], r[8], r[9], r[10])
            for r in rows
        ]

    async def renew(self, owner: str, keys: Sequence[tuple[str, int]], until: float) -> None:
        """Extend the leases of the items (batch id, index) that `owner` is working on."""
        if not keys:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(_I)
                .where(
                    sa.tuple_(_I.c.batch_id, _I.c.idx).in_(list(keys)),
                    _I.c.lease_owner == owner,
                    _I.c.state == "running",
                )
                .values(lease_until=until)
            )

    async def mark_submitted(
        self, owner: str, keys: Sequence[tuple[str, int]], upstream: str, dep: str
    ) -> None:
        """Record the native batch the items were sent in (a later runner polls it, never resends)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(_I)
                .where(sa.tuple_(_I.c.batch_id, _I.c.idx).in_(list(keys)), _I.c.lease_owner == owner)
                .values(upstream_batch=upstream, deployment=dep)
            )

    async def finish(self, owner: str, done: Sequence[tuple[Claimed, str, str]], now: float) -> int:
        """Write results of items `owner` still holds the lease on, in one transaction; how many."""
        if not done:
            return 0
        stmt = (
            sa.update(_I)
            .where(
                _I.c.batch_id == sa.bindparam("b_id"),
                _I.c.idx == sa.bindparam("b_idx"),
                _I.c.lease_owner == owner,
                _I.c.state == "running",
            )
            .values(
                state=sa.bindparam("b_state"),
                result=sa.bindparam("b_result"),
                finished_at=now,
                lease_owner=None,
                lease_until=None,
            )
        )
        rows = [{"b_id": i.batch_id, "b_idx": i.idx, "b_state": st, "b_result": r} for i, st, r in done]
        async with self.engine.begin() as conn:
            result = await conn.execute(stmt, rows)
            return int(result.rowcount)

    async def release(self, owner: str, item: Claimed) -> None:
        """Give an unfinished item back (this runner is stopping)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(_I)
                .where(*_held(owner, item))
                .values(state="queued", lease_owner=None, lease_until=None)
            )

    async def sweep(self, now: float, batch_id: str | None = None) -> None:
        """Expire overdue batches' waiting items, cancel canceling batches' orphaned items, and end
        every active batch with nothing left queued or running."""
        only = (_B.c.id == batch_id,) if batch_id else ()
        async with self.engine.begin() as conn:
            stale = sa.or_(_I.c.state == "queued", sa.and_(_I.c.state == "running", _I.c.lease_until < now))
            overdue = sa.select(_B.c.id).where(_B.c.status.in_(ACTIVE), _B.c.expires_at <= now, *only)
            await conn.execute(
                sa.update(_I)
                .where(_I.c.batch_id.in_(overdue), stale)
                .values(state="expired", finished_at=now, lease_owner=None, lease_until=None)
            )
            canceling = sa.select(_B.c.id).where(_B.c.status == "canceling", *only)
            await conn.execute(
                sa.update(_I)
                .where(_I.c.batch_id.in_(canceling), stale)
                .values(state="canceled", finished_at=now, lease_owner=None, lease_until=None)
            )
            open_items = sa.select(_I.c.batch_id).where(
                _I.c.batch_id == _B.c.id, _I.c.state.in_(("queued", "running"))
            )
            await conn.execute(
                sa.update(_B)
                .where(_B.c.status.in_(ACTIVE), ~sa.exists(open_items), *only)
                .values(status="ended", ended_at=now)
            )

    async def unfinalized(self) -> list[str]:
        """OpenAI batches that have ended but whose output files are not written yet."""
        query = sa.select(_B.c.id).where(
            _B.c.kind == OPENAI, _B.c.status == "ended", _B.c.finalized_at.is_(None)
        )
        async with self.engine.connect() as conn:
            return [r[0] for r in (await conn.execute(query)).all()]

    async def finalize(self, batch_id: str, now: float, extra: Any, files: Sequence[dict[str, Any]]) -> bool:
        """Write an ended OpenAI batch's output files (rows of `parley_files`) and its new fields in
        one transaction, once: False when another runner already did."""
        async with self.engine.begin() as conn:
            done = await conn.execute(
                sa.update(_B)
                .where(_B.c.id == batch_id, _B.c.finalized_at.is_(None))
                .values(finalized_at=now, extra=extra)
            )
            if done.rowcount != 1:
                await conn.rollback()
                return False
            for values in files:
                await conn.execute(sa.insert(t.files).values(**values))
        return True

    async def purge(self, before: float) -> int:
        """Delete batches that ended before `before` (their results are no longer kept)."""
        async with self.engine.begin() as conn:
            old = sa.select(_B.c.id).where(_B.c.status.in_(("ended", "failed")), _B.c.ended_at < before)
            ids = [r[0] for r in (await conn.execute(old)).all()]
            if ids:
                await conn.execute(sa.delete(_I).where(_I.c.batch_id.in_(ids)))
                await conn.execute(sa.delete(_B).where(_B.c.id.in_(ids)))
            return len(ids)


def _held(owner: str, item: Claimed) -> tuple[Any, ...]:
    """The item, while `owner` holds its lease."""
    return (
        _I.c.batch_id == item.batch_id,
        _I.c.idx == item.idx,
        _I.c.lease_owner == owner,
        _I.c.state == "running",
    )


def _batch_row(row: Any, tally: dict[str, int]) -> BatchRow:
    if row.status == "ended" or row.kind == OPENAI:  # OpenAI's counts show progress
        waiting = tally.get("queued", 0) + tally.get("running", 0)
        counts = Counts(waiting, *(tally.get(s, 0) for s in FINAL))
    else:  # as Anthropic's: every request counts as processing until the batch has ended
        counts = Counts(processing=row.total)
    return BatchRow(
        row.id,
        row.api_key,
        row.team_id,
        row.status,
        row.total,
        row.created_at,
        row.expires_at,
        row.ended_at,
        row.cancel_initiated_at,
        counts,
        row.kind,
        row.extra,
        row.finalized_at,
    )
