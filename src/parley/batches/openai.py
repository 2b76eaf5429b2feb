"""OpenAI's Batch API (`/v1/batches`) on the gateway's batch runner: checking the JSONL input file,
the Batch object, each item's result, and the output and error files written when a batch ends.

Each input line `{custom_id, method, url, body}` is one item of kind "openai", run by the same
runner as a Messages batch item but through the `/v1/chat/completions` endpoint. Its stored result
is the line's `response` (`{status_code, request_id, body}`); canceled and expired items have none.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from typing import Any

import orjson

from parley.batches.store import OPENAI, BatchRow, BatchStore, NewItem
from parley.core.errors import GatewayError, openai_error_body
from parley.pipeline.body import check_chat_request

ROUTE = "/v1/batches"
ENDPOINT = "/v1/chat/completions"
WINDOW = "24h"
MAX_ITEMS = 50_000  # OpenAI's limit per batch
MAX_ERRORS = 100  # validation errors reported (the first ones)
CUSTOM_ID_MAX = 64
RESULTS_PAGE = 1000


@dataclass(frozen=True, slots=True)
class OpenAIFields:
    """What an OpenAI batch keeps beside the common batch row (its `extra` column)."""

    input_file_id: str
    file_owner: str  # owner of the output files: the creating key's team, or the key
    metadata: dict[str, str] | None = None
    errors: list[dict[str, Any]] | None = None  # validation errors of a failed batch
    output_file_id: str | None = None
    error_file_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> OpenAIFields:
        return cls(**data)


def parse_input(content: bytes) -> tuple[list[NewItem], list[dict[str, Any]]]:
    """The items of a batch input file, and OpenAI's validation errors (`{code, message, param,
    line}`); any error fails the whole batch."""
    items: list[NewItem] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for n, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = _item(orjson.loads(line), seen)
        except orjson.JSONDecodeError:
            errors.append(_error("invalid_json_line", "This line is not parseable as valid JSON.", None, n))
        except _LineError as e:
            errors.append(_error(e.code, e.message, e.param, n))
        else:
            items.append(item)
        if len(errors) >= MAX_ERRORS:
            break
    if not items and not errors:
        errors.append(_error("empty_file", "The input file is empty.", None, None))
    if len(items) > MAX_ITEMS:
        errors.append(_error("too_many_tasks", f"A batch holds at most {MAX_ITEMS} requests.", None, None))
    return items, errors


class _LineError(Exception):
    def __init__(self, code: str, message: str, param: str | None) -> None:
        self.code, self.message, self.param = code, message, param


def _item(request: Any, seen: set[str]) -> NewItem:
    if not isinstance(request, dict):
        raise _LineError("invalid_request", "Each line must be a JSON object.", None)
    custom_id = request.get("custom_id")
    if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= CUSTOM_ID_MAX:
        message = f"custom_id: a string of 1 to {CUSTOM_ID_MAX} characters is required."
        raise _LineError("missing_required_parameter", message, "custom_id")
    if custom_id in seen:
        raise _LineError("duplicate_custom_id", f"The custom_id {custom_id!r} is used twice.", "custom_id")
    seen.add(custom_id)
    if request.get("method") != "POST":
        raise _LineError("invalid_method", "method: only POST is supported.", "method")
    if request.get("url") != ENDPOINT:
        message = f"url: must be {ENDPOINT}, the batch's endpoint."
        raise _LineError("mismatched_endpoint", message, "url")
    body = request.get("body")
    if not isinstance(body, dict):
        raise _LineError("missing_required_parameter", "body: a JSON object is required.", "body")
    try:
        check_chat_request(body)
    except GatewayError as e:
        raise _LineError("invalid_request", f"body.{e.message}", "body") from None
    if body.get("stream"):
        raise _LineError("invalid_request", "body.stream: batch requests cannot stream.", "body.stream")
    return NewItem(custom_id, body["model"], orjson.dumps(body).decode())


def _error(code: str, message: str, param: str | None, line: int | None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


# item results -----------------------------------------------------------------------------------
def chat_outcome(status: int, data: bytes, request_id: str) -> tuple[str, str]:
    """(state, stored result) of an item the endpoint answered."""
    try:
        parsed = orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        parsed = None
    if status < 300 and isinstance(parsed, dict) and parsed.get("object") == "chat.completion":
        return "succeeded", _response(status, request_id, parsed)
    if not (isinstance(parsed, dict) and isinstance(parsed.get("error"), dict)):
        message = f"upstream answered HTTP {status} with a body that is not a chat completion"
        parsed = orjson.loads(openai_error_body(message, "api_error"))
        status = status if status >= 400 else 502
    return "errored", _response(status, request_id, parsed)


def chat_refused(error: GatewayError, request_id: str) -> tuple[str, str]:
    """(state, stored result) of an item refused before it was sent (key, budget, guardrail ...)."""
    return "errored", _response(error.status, request_id, orjson.loads(error.openai_body()))


def _response(status: int, request_id: str, body: Any) -> str:
    return orjson.dumps({"status_code": status, "request_id": request_id, "body": body}).decode()


def output_line(batch_id: str, idx: int, custom_id: str, state: str, result: str | None) -> bytes:
    """One line of the output or error file."""
    line: dict[str, Any] = {"id": f"batch_req_{batch_id[6:]}_{idx}", "custom_id": custom_id}
    if state in ("canceled", "expired") or result is None:
        code = "batch_cancelled" if state == "canceled" else "batch_expired"
        line["response"] = None
        line["error"] = {"code": code, "message": f"The batch was {state} before this request ran."}
    else:
        line["response"], line["error"] = orjson.loads(result), None
    return orjson.dumps(line) + b"\n"


async def finalize(store: BatchStore, batch_id: str, now: float) -> bool:
    """Write an ended batch's output file (succeeded items) and error file (the rest) into
    `parley_files`, owned by the batch's owner; once, whichever runner gets there first."""
    row = await store.get(batch_id)
    if row is None or row.finalized_at is not None:
        return False
    fields = OpenAIFields.from_json(row.extra)
    good: list[bytes] = []
    bad: list[bytes] = []
    after = -1
    while page := await store.results(batch_id, after, RESULTS_PAGE):
        for r in page:
            (good if r.state == "succeeded" else bad).append(
                output_line(batch_id, r.idx, r.custom_id, r.state, r.result)
            )
        after = page[-1].idx
    files = []
    ids: dict[str, str | None] = {"output": None, "error": None}
    for name, lines in (("output", good), ("error", bad)):
        if lines:
            content = b"".join(lines)
            ids[name] = "file-" + secrets.token_hex(12)
            files.append(
                {
                    "id": ids[name],
                    "owner": fields.file_owner,
                    "filename": f"{batch_id}_{name}.jsonl",
                    "purpose": "batch_output",
                    "bytes": len(content),
                    "content": content,
                    "created_at": now,
                }
            )
    done = dataclasses.replace(fields, output_file_id=ids["output"], error_file_id=ids["error"])
    return await store.finalize(batch_id, now, done.to_json(), files)


# the Batch object -------------------------------------------------------------------------------
def status_of(row: BatchRow) -> str:
    if row.status in ("failed", "in_progress"):
        return row.status
    if row.status == "canceling" or (row.finalized_at is None and row.cancel_initiated_at is not None):
        return "cancelling"
    if row.finalized_at is None:
        return "finalizing"
    if row.cancel_initiated_at is not None:
        return "cancelled"
    return "expired" if row.counts.expired else "completed"


def batch_object(row: BatchRow) -> dict[str, Any]:
    fields = OpenAIFields.from_json(row.extra)
    status = status_of(row)
    c = row.counts
    final = _int(row.finalized_at)
    errors = {"object": "list", "data": fields.errors} if fields.errors else None
    return {
        "id": row.id,
        "object": "batch",
        "endpoint": ENDPOINT,
        "errors": errors,
        "input_file_id": fields.input_file_id,
        "completion_window": WINDOW,
        "status": status,
        "output_file_id": fields.output_file_id,
        "error_file_id": fields.error_file_id,
        "created_at": int(row.created_at),
        "in_progress_at": None if status == "failed" else int(row.created_at),
        "expires_at": int(row.expires_at),
        "finalizing_at": None if status == "failed" else _int(row.ended_at),
        "completed_at": final if status == "completed" else None,
        "failed_at": _int(row.ended_at) if status == "failed" else None,
        "expired_at": final if status == "expired" else None,
        "cancelling_at": _int(row.cancel_initiated_at),
        "cancelled_at": final if status == "cancelled" else None,
        "request_counts": {"total": row.total, "completed": c.succeeded, "failed": c.errored + c.expired},
        "metadata": fields.metadata,
    }


def _int(t: float | None) -> int | None:
    return None if t is None else int(t)


__all__ = [
    "OPENAI",
    "OpenAIFields",
    "batch_object",
    "chat_outcome",
    "chat_refused",
    "finalize",
    "parse_input",
]
