"""`parley ingest`: upload files into a vector store of a running gateway, with a progress bar.

Uses the gateway's OpenAI-shaped API (`/v1/files`, `/v1/vector_stores`), so it works against any
instance; the key decides the owner (its team, or itself). aiohttp is imported only when the
command runs: `parley serve` loads this module for its parser and has no other use for it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp

POLL_SECONDS = 0.25
BAR = 30


class IngestError(Exception):
    pass


def add_parser(sub: Any) -> None:
    ingest = sub.add_parser(
        "ingest",
        help="upload files into a vector store of a running gateway",
        description="Upload text files into a vector store (created with --name, or --store ID) and "
        "show chunking and embedding progress until every file is searchable.",
        epilog="Example: parley ingest --name handbook docs/*.md --key sk-...",
    )
    ingest.add_argument("files", nargs="+", metavar="FILE")
    target = ingest.add_mutually_exclusive_group(required=True)
    target.add_argument("--store", metavar="ID", help="an existing vector store id (vs_...)")
    target.add_argument("--name", help="create a new vector store with this name")
    ingest.add_argument("--url", default="http://127.0.0.1:4000", help="the gateway (default: %(default)s)")
    ingest.add_argument("--key", default=os.environ.get("PARLEY_API_KEY"), help="a key (or PARLEY_API_KEY)")
    ingest.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for ingestion")
    ingest.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import aiohttp

    if not args.key:
        print("parley ingest: give --key or set PARLEY_API_KEY", file=sys.stderr)
        return 2
    try:
        store = asyncio.run(_ingest(args))
    except IngestError as e:
        print(f"parley ingest: {e}", file=sys.stderr)
        return 1
    except aiohttp.ClientError as e:
        print(f"parley ingest: cannot reach {args.url}: {e}", file=sys.stderr)
        return 1
    print(store)
    return 0


async def _ingest(args: argparse.Namespace) -> str:
    import aiohttp

    headers = {"authorization": f"Bearer {args.key}"}
    async with aiohttp.ClientSession(args.url.rstrip("/"), headers=headers) as http:
        store = args.store or (await _call(http, "POST", "/v1/vector_stores", json={"name": args.name}))["id"]
        ids = []
        for path in args.files:
            try:
                with open(path, "rb") as f:
                    content = f.read()
            except OSError as e:
                raise IngestError(f"{path}: {e.strerror}") from None
            form = aiohttp.FormData()
            form.add_field("purpose", "assistants")
            form.add_field("file", content, filename=os.path.basename(path))
            uploaded = await _call(http, "POST", "/v1/files", data=form)
            await _call(http, "POST", f"/v1/vector_stores/{store}/files", json={"file_id": uploaded["id"]})
            ids.append((path, uploaded["id"]))
        await _watch(http, store, ids, time.monotonic() + args.timeout)
    return store


async def _watch(
    http: aiohttp.ClientSession, store: str, ids: list[tuple[str, str]], deadline: float
) -> None:
    failed = []
    while True:
        states = [await _call(http, "GET", f"/v1/vector_stores/{store}/files/{fid}") for _, fid in ids]
        total = sum(s.get("chunks_total", 0) for s in states) or 1
        done = sum(s.get("chunks_done", 0) for s in states)
        finished = [s for s in states if s["status"] != "in_progress"]
        filled = int(BAR * done / total)
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (BAR - filled)}] {done}/{total} chunks, "
            f"{len(finished)}/{len(states)} files"
        )
        sys.stderr.flush()
        if len(finished) == len(states):
            failed = [(p, s) for (p, _), s in zip(ids, states, strict=True) if s["status"] != "completed"]
            break
        if time.monotonic() > deadline:
            raise IngestError("timed out waiting for ingestion (it goes on in the gateway)")
        await asyncio.sleep(POLL_SECONDS)
    sys.stderr.write("\n")
    for path, state in failed:
        error = state.get("last_error") or {}
        sys.stderr.write(f"failed: {path}: {error.get('message', state['status'])}\n")
    if failed:
        raise IngestError(f"{len(failed)} of {len(ids)} files failed")


async def _call(http: aiohttp.ClientSession, method: str, path: str, **kw: Any) -> dict[str, Any]:
    async with http.request(method, path, **kw) as reply:
        data = await reply.json(content_type=None)
        if reply.status >= 400:
            error = data.get("error", {}) if isinstance(data, dict) else {}
            raise IngestError(f"{method} {path}: {reply.status} {error.get('message', data)}")
        return data if isinstance(data, dict) else {}
