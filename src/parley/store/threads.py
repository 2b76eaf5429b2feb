"""Server-held threads in the database: claim a reply to continue from, save a finished turn.

A reply can be continued once (the Messages API's rule): `claim` marks the row with the continuing
request's id in one conditional UPDATE, so two requests racing for the same reply cannot both win;
`release` undoes a claim whose turn failed; `save` stores the new reply's whole history and clears
the continued row's. Saves run off the request path; a continue that arrives before its reply's
save finished waits for it in this process, and reads again briefly for one on another process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.store import tables as t
from parley.store.outage import DATABASE_ERRORS

log = logging.getLogger("parley.store")

# Threads not continued for this long are deleted when the gateway starts (their content is the
# conversation: it is not kept forever).
RETENTION_SECONDS = 30 * 86400
# A reply saved by another worker may land just after its client's next request: read again for
# up to this long before answering thread_not_found (the SDK then replays the history anyway).
UNSEEN_RETRY = (0.05, 0.1, 0.2, 0.4)


@dataclass(frozen=True, slots=True)
class ThreadState:
    system: Any
    tools: Any
    messages: list[Any]


class ThreadClaim(Exception):
    """Why a reply cannot be continued: `code` is the API's error_code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class ThreadStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._saving: dict[str, asyncio.Task[None]] = {}  # reply id -> its save in this process
        self._saving_after: dict[str, asyncio.Task[None]] = {}  # continued reply id -> that save

    async def claim(self, message_id: str, owner: str | None, request_id: str) -> ThreadState:
        """The history up to `message_id`, now claimed by `request_id`; raises ThreadClaim."""
        for pending in (self._saving.get(message_id), self._saving_after.get(message_id)):
            if pending is not None:  # its reply, or the turn that continued it, is being saved
                await asyncio.shield(pending)
        for wait in (*UNSEEN_RETRY, None):
            try:
                found = await self._claim_once(message_id, owner, request_id)
            except DATABASE_ERRORS as e:  # the SDK replays the whole history: still a right answer
                log.warning("thread %s unreadable, answered thread_not_found: %s", message_id, e)
                raise ThreadClaim("thread_not_found") from None
            if found is not None:
                return found
            if wait is None:
                break
            await asyncio.sleep(wait)
        raise ThreadClaim("thread_not_found")

    async def _claim_once(self, message_id: str, owner: str | None, request_id: str) -> ThreadState | None:
        rows = t.threads
        mine = rows.c.owner.is_(None) if owner is None else rows.c.owner == owner
        async with self.engine.begin() as conn:
            claimed = await conn.execute(
                sa.update(rows)
                .where(rows.c.message_id == message_id, mine, rows.c.continued_by.is_(None))
                .values(continued_by=request_id)
            )
            row = (
                await conn.execute(
                    sa.select(rows.c.state, rows.c.continued_by).where(rows.c.message_id == message_id, mine)
                )
            ).first()
        if row is None:
            return None
        if claimed.rowcount != 1:
            raise ThreadClaim(
                "thread_already_continued" if row.state is None else "thread_continue_in_flight"
            )
        state = orjson.loads(row.state)
        return ThreadState(state.get("system"), state.get("tools"), list(state.get("messages") or ()))

    async def release(self, message_id: str, request_id: str) -> None:
        """Give back a claim whose turn failed, so the reply can be continued again."""
        rows = t.threads
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    sa.update(rows)
                    .where(rows.c.message_id == message_id, rows.c.continued_by == request_id)
                    .values(continued_by=None)
                )
        except DATABASE_ERRORS as e:  # the reply stays claimed: its next continue is replayed
            log.warning("thread %s not released: %s", message_id, e)

    def save_soon(
        self,
        spawn: Any,
        message_id: str,
        owner: str | None,
        model: str | None,
        state: ThreadState,
        parent: str | None,
    ) -> None:
        """Save a finished turn in the background (`spawn` runs it); a continue waits for it."""

        async def run() -> None:
            try:
                await self.save(message_id, owner, model, state, parent)
            except DATABASE_ERRORS as e:  # the client's continue gets thread_not_found and replays
                log.warning("thread turn %s not saved: %s", message_id, e)
            finally:
                self._saving.pop(message_id, None)
                if parent is not None:
                    self._saving_after.pop(parent, None)

        task = spawn(run())
        self._saving[message_id] = task
        if parent is not None:
            self._saving_after[parent] = task

    async def save(
        self, message_id: str, owner: str | None, model: str | None, state: ThreadState, parent: str | None
    ) -> None:
        rows = t.threads
        payload = orjson.dumps({"system": state.system, "tools": state.tools, "messages": state.messages})
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.insert(rows).values(
                    message_id=message_id,
                    owner=owner,
                    model=model,
                    state=payload.decode(),
                    continued_by=None,
                    created_at=time.time(),
                )
            )
            if parent is not None:
                await conn.execute(sa.update(rows).where(rows.c.message_id == parent).values(state=None))

    async def prune(self, older_than: float = RETENTION_SECONDS) -> int:
        """Delete threads created more than `older_than` seconds ago; how many went."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sa.delete(t.threads).where(t.threads.c.created_at < time.time() - older_than)
            )
        return int(result.rowcount or 0)
