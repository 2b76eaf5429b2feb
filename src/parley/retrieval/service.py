"""Vector stores and files in the database, ingestion in the background, search through a cached index.

Ownership: a store or file belongs to the caller's team when its key has one, else to the key; the
master key sees everything. Other callers get 404 for what is not theirs (its existence is not told).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.core.errors import GatewayError
from parley.core.tasks import Tasks
from parley.providers.local_embed import LocalEmbedder
from parley.retrieval.chunking import Chunking, chunk_text
from parley.store import tables as t

if TYPE_CHECKING:  # numpy (through the index) is imported when a store is searched or filled
    import numpy as np

    from parley.retrieval.index import Hit, StoreIndex

log = logging.getLogger("parley.retrieval")

EMBED_BATCH = 256
INLINE_CHUNKS = 20_000  # larger searches (a few ms of matrix product) run in a thread
MASTER = "master"


def owner_of(auth: Any) -> str:
    """The owner string for the caller `ctx.auth` (a KeyRecord, "master" or None)."""
    if auth == MASTER:
        return MASTER
    team, token = getattr(auth, "team_id", None), getattr(auth, "token", None)
    if team:
        return "team:" + team
    return "key:" + token if token else "anonymous"


def not_found(what: str, ident: str) -> GatewayError:
    return GatewayError(404, f"No {what} found with id '{ident}'.", "not_found_error")


@dataclass(frozen=True, slots=True)
class Retrieved:
    hits: list[Hit]
    filenames: dict[str, str]  # file id -> filename


class VectorStores:
    def __init__(self, engine: AsyncEngine, embedder: LocalEmbedder, tasks: Tasks) -> None:
        self.engine = engine
        self.embedder = embedder
        self.tasks = tasks
        self._indexes: dict[str, tuple[int, StoreIndex]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # --- stores --------------------------------------------------------------------------------

    async def create_store(self, owner: str, name: str | None, metadata: dict[str, Any] | None) -> str:
        ident = "vs_" + secrets.token_hex(12)
        now = time.time()
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.insert(t.vector_stores).values(
                    id=ident, name=name, owner=owner, metadata=metadata, created_at=now, last_active_at=now
                )
            )
        return ident

    async def store_row(self, owner: str, ident: str) -> Any:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(t.vector_stores).where(t.vector_stores.c.id == ident))
            ).first()
        if row is None or not _visible(owner, row.owner):
            raise not_found("vector store", ident)
        return row

    async def store_json(self, owner: str, ident: str) -> dict[str, Any]:
        row = await self.store_row(owner, ident)
        f = t.vector_store_files
        async with self.engine.connect() as conn:
            counts = {
                status: n
                for status, n in await conn.execute(
                    sa.select(f.c.status, sa.func.count()).where(f.c.store_id == ident).group_by(f.c.status)
                )
            }
            used = (
                await conn.execute(sa.select(sa.func.sum(f.c.bytes)).where(f.c.store_id == ident))
            ).scalar()
        return store_json(row, counts, int(used or 0))

    async def list_stores(self, owner: str) -> list[str]:
        s = t.vector_stores
        query = sa.select(s.c.id).order_by(s.c.created_at.desc(), s.c.id)
        if owner != MASTER:
            query = query.where(s.c.owner == owner)
        async with self.engine.connect() as conn:
            return [r[0] for r in await conn.execute(query)]

    async def update_store(self, owner: str, ident: str, values: dict[str, Any]) -> None:
        await self.store_row(owner, ident)
        if values:
            async with self.engine.begin() as conn:
                await conn.execute(
                    sa.update(t.vector_stores).where(t.vector_stores.c.id == ident).values(**values)
                )

    async def delete_store(self, owner: str, ident: str) -> None:
        await self.store_row(owner, ident)
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(t.vector_chunks).where(t.vector_chunks.c.store_id == ident))
            await conn.execute(
                sa.delete(t.vector_store_files).where(t.vector_store_files.c.store_id == ident)
            )
            await conn.execute(sa.delete(t.vector_stores).where(t.vector_stores.c.id == ident))
        self._indexes.pop(ident, None)

    # --- files ---------------------------------------------------------------------------------

    async def upload(self, owner: str, filename: str, purpose: str, content: bytes) -> dict[str, Any]:
        ident = "file-" + secrets.token_hex(12)
        values = dict(
            id=ident,
            owner=owner,
            filename=filename[:255],
            purpose=purpose,
            bytes=len(content),
            content=content,
            created_at=time.time(),
        )
        async with self.engine.begin() as conn:
            await conn.execute(sa.insert(t.files).values(**values))
        return file_json(values)

    async def file_row(self, owner: str, ident: str, content: bool = False) -> Any:
        f = t.files
        cols = [c for c in f.c if content or c.name != "content"]
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(*cols).where(f.c.id == ident))).first()
        if row is None or not _visible(owner, row.owner):
            raise not_found("file", ident)
        return row

    async def list_files(self, owner: str) -> list[dict[str, Any]]:
        f = t.files
        query = sa.select(*[c for c in f.c if c.name != "content"]).order_by(f.c.created_at.desc())
        if owner != MASTER:
            query = query.where(f.c.owner == owner)
        async with self.engine.connect() as conn:
            return [file_json(r._mapping) for r in await conn.execute(query)]

    async def delete_file(self, owner: str, ident: str) -> None:
        await self.file_row(owner, ident)
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(t.files).where(t.files.c.id == ident))

    # --- files in stores -----------------------------------------------------------------------

    async def attach(
        self, owner: str, store_id: str, file_id: str, attributes: dict[str, Any] | None, chunking: Chunking
    ) -> None:
        await self.store_row(owner, store_id)
        row = await self.file_row(owner, file_id)
        values = dict(
            store_id=store_id,
            file_id=file_id,
            status="in_progress",
            attributes=attributes,
            chunking=chunking.as_json(),
            bytes=row.bytes,
            created_at=time.time(),
        )
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(t.vector_chunks).where(_chunk_of(store_id, file_id)))
            await conn.execute(sa.delete(t.vector_store_files).where(_file_in(store_id, file_id)))
            await conn.execute(sa.insert(t.vector_store_files).values(**values))
        self.tasks.spawn(self._ingest(store_id, file_id, chunking))

    async def store_file_row(self, owner: str, store_id: str, file_id: str) -> Any:
        await self.store_row(owner, store_id)
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(t.vector_store_files).where(_file_in(store_id, file_id)))
            ).first()
        if row is None:
            raise not_found("file", file_id)
        return row

    async def store_files(self, owner: str, store_id: str) -> list[Any]:
        await self.store_row(owner, store_id)
        f = t.vector_store_files
        async with self.engine.connect() as conn:
            query = sa.select(f).where(f.c.store_id == store_id).order_by(f.c.created_at.desc())
            return list(await conn.execute(query))

    async def detach(self, owner: str, store_id: str, file_id: str) -> None:
        await self.store_file_row(owner, store_id, file_id)
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(t.vector_chunks).where(_chunk_of(store_id, file_id)))
            await conn.execute(sa.delete(t.vector_store_files).where(_file_in(store_id, file_id)))
            await _bump(conn, store_id)

    async def _ingest(self, store_id: str, file_id: str, chunking: Chunking) -> None:
        try:
            await self._ingest_file(store_id, file_id, chunking)
        except _Unsupported as e:
            await self._finish(store_id, file_id, "failed", {"code": "unsupported_file", "message": str(e)})
        except Exception as e:
            log.exception("ingesting %s into %s failed", file_id, store_id)
            await self._finish(store_id, file_id, "failed", {"code": "server_error", "message": str(e)[:500]})

    async def _ingest_file(self, store_id: str, file_id: str, chunking: Chunking) -> None:
        async with self.engine.connect() as conn:
            content = (
                await conn.execute(sa.select(t.files.c.content).where(t.files.c.id == file_id))
            ).scalar()
        if content is None:
            raise _Unsupported("the file was deleted before it was read")
        try:
            text = bytes(content).decode("utf-8")
        except UnicodeDecodeError:
            raise _Unsupported(
                "only UTF-8 text files (txt, md, csv, json, html, code) can be searched"
            ) from None
        loop = asyncio.get_running_loop()
        pieces = await loop.run_in_executor(None, chunk_text, text, self.embedder.token_spans, chunking)
        await self._progress(store_id, file_id, chunks_total=len(pieces))
        for start in range(0, len(pieces), EMBED_BATCH):
            batch = pieces[start : start + EMBED_BATCH]
            vectors = (await loop.run_in_executor(None, self.embedder.embed, batch)).vectors
            rows = [
                dict(store_id=store_id, file_id=file_id, position=start + i, text=p, embedding=_f16(v))
                for i, (p, v) in enumerate(zip(batch, vectors, strict=True))
            ]
            async with self.engine.begin() as conn:
                await conn.execute(sa.insert(t.vector_chunks), rows)
            await self._progress(store_id, file_id, chunks_done=start + len(batch))
        await self._finish(store_id, file_id, "completed", None)

    async def _progress(self, store_id: str, file_id: str, **counts: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(t.vector_store_files).where(_file_in(store_id, file_id)).values(**counts)
            )

    async def _finish(self, store_id: str, file_id: str, status: str, error: dict[str, str] | None) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(t.vector_store_files)
                .where(_file_in(store_id, file_id))
                .values(status=status, last_error=error)
            )
            await _bump(conn, store_id)

    # --- search --------------------------------------------------------------------------------

    async def search(self, store_ids: list[str], query: str, k: int) -> Retrieved:
        """The best `k` chunks over `store_ids` (already checked by the caller)."""
        from parley.retrieval.index import merge

        vector = (await self.embedder.aembed([query])).vectors[0]
        indexes = [await self._index(ident) for ident in store_ids]

        def run() -> list[Hit]:
            return merge([index.search(vector, query, k) for index in indexes], k)

        if sum(len(index) for index in indexes) > INLINE_CHUNKS:
            hits = await asyncio.get_running_loop().run_in_executor(None, run)
        else:
            hits = run()
        return Retrieved(hits, await self._filenames({h.chunk.file_id for h in hits}))

    async def _filenames(self, ids: set[str]) -> dict[str, str]:
        if not ids:
            return {}
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(t.files.c.id, t.files.c.filename).where(t.files.c.id.in_(ids))
            )
            return {r[0]: r[1] for r in rows}

    async def _index(self, store_id: str) -> StoreIndex:
        lock = self._locks.setdefault(store_id, asyncio.Lock())
        async with lock:
            async with self.engine.connect() as conn:
                version = (
                    await conn.execute(
                        sa.select(t.vector_stores.c.version).where(t.vector_stores.c.id == store_id)
                    )
                ).scalar()
                cached = self._indexes.get(store_id)
                if cached is not None and cached[0] == version:
                    return cached[1]
                c = t.vector_chunks
                query = sa.select(c.c.id, c.c.file_id, c.c.text, c.c.embedding).where(
                    c.c.store_id == store_id
                )
                rows = list(await conn.execute(query.order_by(c.c.id)))
            index = await asyncio.get_running_loop().run_in_executor(None, _build, rows)
            self._indexes[store_id] = (version or 0, index)
            return index


class _Unsupported(Exception):
    pass


def _build(rows: list[Any]) -> StoreIndex:
    import numpy as np

    from parley.retrieval.index import Chunk, StoreIndex

    chunks = [Chunk(r[0], r[1], r[2]) for r in rows]
    if not rows:
        return StoreIndex(chunks, np.zeros((0, 1), dtype=np.float32))
    vectors = np.frombuffer(b"".join(r[3] for r in rows), dtype="<f2").reshape(len(rows), -1)
    return StoreIndex(chunks, vectors)


def _f16(vector: np.ndarray) -> bytes:
    return vector.astype("<f2").tobytes()


def _visible(owner: str, row_owner: str) -> bool:
    return owner in (MASTER, row_owner)


def _file_in(store_id: str, file_id: str) -> Any:
    f = t.vector_store_files
    return sa.and_(f.c.store_id == store_id, f.c.file_id == file_id)


def _chunk_of(store_id: str, file_id: str) -> Any:
    c = t.vector_chunks
    return sa.and_(c.c.store_id == store_id, c.c.file_id == file_id)


async def _bump(conn: Any, store_id: str) -> None:
    s = t.vector_stores
    await conn.execute(
        sa.update(s).where(s.c.id == store_id).values(version=s.c.version + 1, last_active_at=time.time())
    )


def store_json(row: Any, counts: dict[str, int], used: int) -> dict[str, Any]:
    file_counts = {k: counts.get(k, 0) for k in ("in_progress", "completed", "failed", "cancelled")}
    file_counts["total"] = sum(counts.values())
    return {
        "id": row.id,
        "object": "vector_store",
        "created_at": int(row.created_at),
        "last_active_at": int(row.last_active_at) if row.last_active_at else None,
        "name": row.name or "",
        "metadata": row.metadata or {},
        "file_counts": file_counts,
        "status": "in_progress" if file_counts["in_progress"] else "completed",
        "usage_bytes": used,
        "expires_after": None,
        "expires_at": None,
    }


def file_json(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "file",
        "bytes": row["bytes"],
        "created_at": int(row["created_at"]),
        "filename": row["filename"],
        "purpose": row["purpose"],
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }


def store_file_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.file_id,
        "object": "vector_store.file",
        "created_at": int(row.created_at),
        "vector_store_id": row.store_id,
        "status": row.status,
        "last_error": row.last_error,
        "usage_bytes": row.bytes,
        "attributes": row.attributes or {},
        "chunking_strategy": row.chunking,
        # parley's own: ingestion progress of a large file
        "chunks_total": row.chunks_total,
        "chunks_done": row.chunks_done,
    }
