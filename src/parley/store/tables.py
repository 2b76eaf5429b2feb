"""Table definitions (SQLAlchemy Core): keys, users, teams, customers, tags and spend logs.

Times are epoch seconds (float) so SQLite and Postgres behave the same; money is USD as a double.
The schema itself is created and upgraded by the Alembic migrations in `migrations/`.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()


def _budget_columns() -> list[sa.Column]:
    """Budget, limits and spend: the same on keys, users, teams and customers."""
    return [
        sa.Column("models", sa.JSON, nullable=True),
        sa.Column("max_budget", sa.Double, nullable=True),
        sa.Column("budget_duration", sa.String(16), nullable=True),
        sa.Column("budget_reset_at", sa.Double, nullable=True),
        sa.Column("spend", sa.Double, nullable=False, server_default="0"),
        sa.Column("rpm_limit", sa.Integer, nullable=True),
        sa.Column("tpm_limit", sa.BigInteger, nullable=True),
        sa.Column("max_parallel_requests", sa.Integer, nullable=True),
        sa.Column("metadata", sa.JSON, nullable=True),
        sa.Column("blocked", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    ]


keys = sa.Table(
    "parley_keys",
    metadata,
    sa.Column("token", sa.String(64), primary_key=True),  # sha256 hex of the key
    sa.Column("key_name", sa.String(32), nullable=False),  # "sk-...abcd", safe to show
    sa.Column("key_alias", sa.String(255), nullable=True, unique=True),
    sa.Column("user_id", sa.String(255), nullable=True, index=True),
    sa.Column("team_id", sa.String(255), nullable=True, index=True),
    sa.Column("budget_mode", sa.String(8), nullable=False, server_default="strict"),
    sa.Column("tags", sa.JSON, nullable=True),
    sa.Column("expires", sa.Double, nullable=True),
    sa.Column("end_users", sa.JSON, nullable=True),  # end users the key may act for; "*" = any
    sa.Column("guardrails", sa.JSON, nullable=True),  # guardrail names (migration 0010)
    *_budget_columns(),
)

users = sa.Table(
    "parley_users",
    metadata,
    sa.Column("user_id", sa.String(255), primary_key=True),
    sa.Column("user_alias", sa.String(255), nullable=True),
    sa.Column("user_email", sa.String(255), nullable=True),
    sa.Column("user_role", sa.String(64), nullable=True),
    *_budget_columns(),
)

teams = sa.Table(
    "parley_teams",
    metadata,
    sa.Column("team_id", sa.String(255), primary_key=True),
    sa.Column("team_alias", sa.String(255), nullable=True),
    sa.Column("guardrails", sa.JSON, nullable=True),  # guardrail names (migration 0010)
    *_budget_columns(),
)

customers = sa.Table(
    "parley_customers",
    metadata,
    sa.Column("user_id", sa.String(255), primary_key=True),  # the end user's id, as LiteLLM names it
    sa.Column("alias", sa.String(255), nullable=True),
    *_budget_columns(),
)

tags = sa.Table(
    "parley_tags",
    metadata,
    sa.Column("tag", sa.String(255), primary_key=True),
    sa.Column("spend", sa.Double, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
)

spend_logs = sa.Table(
    "parley_spend_logs",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("api_key", sa.String(64), nullable=True, index=True),  # key hash
    sa.Column("key_alias", sa.String(255), nullable=True),
    sa.Column("user", sa.String(255), nullable=True, index=True),
    sa.Column("team_id", sa.String(255), nullable=True, index=True),
    sa.Column("end_user", sa.String(255), nullable=True, index=True),
    sa.Column("session_id", sa.String(255), nullable=True, index=True),
    sa.Column("request_tags", sa.JSON, nullable=True),
    sa.Column("route", sa.String(128), nullable=False),
    sa.Column("model", sa.String(255), nullable=True, index=True),  # as requested
    sa.Column("model_id", sa.String(255), nullable=True),  # deployment id
    sa.Column("custom_llm_provider", sa.String(64), nullable=True),
    sa.Column("upstream_model", sa.String(255), nullable=True),
    sa.Column("prompt_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("completion_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("cache_read_input_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("cache_creation_input_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("total_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("spend", sa.Double, nullable=False, server_default="0"),
    sa.Column("estimated", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("error_type", sa.String(64), nullable=True),
    sa.Column("stream", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("cache_hit", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("latency_ms", sa.Double, nullable=True),
    sa.Column("ttft_ms", sa.Double, nullable=True),
    sa.Column("start_time", sa.Double, nullable=False, index=True),
    sa.Column("end_time", sa.Double, nullable=False),
    sa.Column("day", sa.String(10), nullable=False, index=True),  # UTC YYYY-MM-DD, for reports
    sa.Column("retrieval", sa.JSON, nullable=True),  # {"stores": [...], "chunks": n} when RAG added context
    sa.Column("guardrails", sa.String(512), nullable=True),  # what guardrails did (migration 0010)
    sa.Column("cc_version", sa.String(64), nullable=True),  # Claude Code's version (migration 0012)
    sa.Column("cc_entrypoint", sa.String(64), nullable=True),  # cli, sdk-ts, ... (migration 0012)
)

# Server-held conversations (the Messages API's `thread`) for backends that hold none: one row per
# reply a client may continue from, with the whole history up to it (the row's `state` is cleared
# once a later turn continued it, so storage stays linear in the conversation's length).
threads = sa.Table(
    "parley_threads",
    metadata,
    sa.Column("message_id", sa.String(128), primary_key=True),  # the reply's `id`
    sa.Column("owner", sa.String(64), nullable=True),  # key hash, "master", or null (no auth)
    sa.Column("model", sa.String(255), nullable=True),
    sa.Column("state", sa.Text, nullable=True),  # JSON: system, tools, messages; null once continued
    sa.Column("continued_by", sa.String(64), nullable=True),  # request id of the continuing turn
    sa.Column("created_at", sa.Double, nullable=False, index=True),
)

spend_log_tags = sa.Table(
    "parley_spend_log_tags",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("tag", sa.String(255), primary_key=True, index=True),
)

# table name -> (table, id column name) for the budget-holding subjects
SUBJECTS = {
    "key": (keys, "token"),
    "user": (users, "user_id"),
    "team": (teams, "team_id"),
    "customer": (customers, "user_id"),
}

# Message Batches run by the gateway (`parley.batches`): one row per batch, one per item.
batches = sa.Table(
    "parley_batches",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # msgbatch_…
    sa.Column("api_key", sa.String(64), nullable=True, index=True),  # owner's key hash; None: master
    sa.Column("team_id", sa.String(255), nullable=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),  # in_progress | canceling | ended
    sa.Column("headers", sa.JSON, nullable=True),  # anthropic-version / -beta sent with each item
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False, index=True),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.Column("ended_at", sa.Double, nullable=True),
    sa.Column("cancel_initiated_at", sa.Double, nullable=True),
    sa.Column("kind", sa.String(16), nullable=True),  # None: Anthropic's; "openai": `/v1/batches`
    sa.Column("extra", sa.JSON, nullable=True),  # an OpenAI batch's own fields (`batches.openai`)
    sa.Column("finalized_at", sa.Double, nullable=True),  # OpenAI: output files written
)

batch_items = sa.Table(
    "parley_batch_items",
    metadata,
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("custom_id", sa.String(64), nullable=False),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("params", sa.Text, nullable=False),  # the item's Messages body, JSON
    # queued | running | succeeded | errored | canceled | expired
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_until", sa.Double, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("result", sa.Text, nullable=True),  # the JSONL line's `result`, JSON
    sa.Column("finished_at", sa.Double, nullable=True),
    sa.Column("upstream_batch", sa.String(64), nullable=True),  # a native batch's id upstream
    sa.Column("deployment", sa.String(255), nullable=True),  # the deployment it was sent to
    sa.Index("ix_parley_batch_items_state", "state", "lease_until"),
)

# --- Vector stores (retrieval): OpenAI's vector-store shape, owned by a team or a key ---------------

vector_stores = sa.Table(
    "parley_vector_stores",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # vs_...
    sa.Column("name", sa.String(255), nullable=True),
    sa.Column("owner", sa.String(300), nullable=False, index=True),  # "team:<id>", "key:<hash>", "master"
    sa.Column("metadata", sa.JSON, nullable=True),
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),  # bumped when chunks change
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("last_active_at", sa.Double, nullable=True),
)

files = sa.Table(
    "parley_files",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # file-...
    sa.Column("owner", sa.String(300), nullable=False, index=True),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
)

vector_store_files = sa.Table(
    "parley_vector_store_files",
    metadata,
    sa.Column("store_id", sa.String(64), primary_key=True),
    sa.Column("file_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # in_progress | completed | failed | cancelled
    sa.Column("last_error", sa.JSON, nullable=True),
    sa.Column("attributes", sa.JSON, nullable=True),
    sa.Column("chunking", sa.JSON, nullable=True),
    sa.Column("bytes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("chunks_total", sa.Integer, nullable=False, server_default="0"),
    sa.Column("chunks_done", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Double, nullable=False),
)

vector_chunks = sa.Table(
    "parley_vector_chunks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("store_id", sa.String(64), nullable=False, index=True),
    sa.Column("file_id", sa.String(64), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("embedding", sa.LargeBinary, nullable=False),  # float16, little-endian, unit length
)

cache_entries = sa.Table(
    "parley_cache",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Column("expires", sa.Double, nullable=False, index=True),
)
