"""A spend-log row as the writer carries it: a plain tuple in `COLUMNS` order, built once per request.

The request path builds the tuple (`filters.spend_log.spend_row`) and hands it to the writer; the
journal thread writes it as a JSON array (its segment's header names the columns), the database
writer binds it as it is (JSON columns serialized). Rows read back from a journal are mappings,
possibly written before a column existed: `from_mapping` fills what they lack with the column's
default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Every column of `parley_spend_logs`, in the order the row tuple holds them (a test checks the set).
COLUMNS: tuple[str, ...] = (
    "request_id",
    "api_key",
    "key_alias",
    "user",
    "team_id",
    "end_user",
    "session_id",
    "request_tags",
    "route",
    "model",
    "model_id",
    "custom_llm_provider",
    "upstream_model",
    "prompt_tokens",
    "completion_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "total_tokens",
    "spend",
    "estimated",
    "status",
    "error_type",
    "stream",
    "cache_hit",
    "latency_ms",
    "ttft_ms",
    "start_time",
    "end_time",
    "day",
    "retrieval",
    "guardrails",
    "cc_version",
    "cc_entrypoint",
)
SpendRow = tuple[Any, ...]

_AT = {name: i for i, name in enumerate(COLUMNS)}
REQUEST_ID, TAGS, SPEND, END_TIME = _AT["request_id"], _AT["request_tags"], _AT["spend"], _AT["end_time"]
RETRIEVAL = _AT["retrieval"]
JSON_AT = (TAGS, RETRIEVAL)  # JSON columns: serialized when written
# (ledger scope, column) of the budgets a row counts against, in the writer's fixed update order
SUBJECT_AT = (
    ("key", _AT["api_key"]),
    ("team", _AT["team_id"]),
    ("user", _AT["user"]),
    ("customer", _AT["end_user"]),
)
LEDGER_AT = tuple((scope + ":", i) for scope, i in SUBJECT_AT)  # ledger keys are "<scope>:<id>"
# what a journaled row written before a column existed stores there (the column's server default)
_DEFAULTS = {
    "prompt_tokens": 0,
    "completion_tokens": 0,
    "cache_read_input_tokens": 0,
    "cache_creation_input_tokens": 0,
    "total_tokens": 0,
    "spend": 0.0,
    "estimated": False,
    "stream": False,
    "cache_hit": False,
}


def from_mapping(row: Mapping[str, Any]) -> SpendRow:
    """A row tuple from a mapping; missing columns get their default (None when they have none)."""
    return tuple(row[name] if name in row else _DEFAULTS.get(name) for name in COLUMNS)


def ledger_deltas(rows: list[SpendRow]) -> dict[str, float]:
    """Ledger key ("key:<hash>", "user:<id>", ...) -> the spend of `rows` counted against it."""
    out: dict[str, float] = {}
    for row in rows:
        spend = row[SPEND]
        if spend:
            for prefix, i in LEDGER_AT:
                ident = row[i]
                if ident:
                    key = prefix + ident
                    out[key] = out.get(key, 0.0) + spend
    return out
