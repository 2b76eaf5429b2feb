"""Keys, users, teams, customers, tags, spend logs.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _budget_columns() -> list:
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


def upgrade() -> None:
    op.create_table(
        "parley_keys",
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("key_name", sa.String(32), nullable=False),
        sa.Column("key_alias", sa.String(255), nullable=True, unique=True),
        sa.Column("user_id", sa.String(255), nullable=True, index=True),
        sa.Column("team_id", sa.String(255), nullable=True, index=True),
        sa.Column("budget_mode", sa.String(8), nullable=False, server_default="strict"),
        sa.Column("tags", sa.JSON, nullable=True),
        sa.Column("expires", sa.Double, nullable=True),
        *_budget_columns(),
    )
    op.create_table(
        "parley_users",
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("user_alias", sa.String(255), nullable=True),
        sa.Column("user_email", sa.String(255), nullable=True),
        sa.Column("user_role", sa.String(64), nullable=True),
        *_budget_columns(),
    )
    op.create_table(
        "parley_teams",
        sa.Column("team_id", sa.String(255), primary_key=True),
        sa.Column("team_alias", sa.String(255), nullable=True),
        *_budget_columns(),
    )
    op.create_table(
        "parley_customers",
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("alias", sa.String(255), nullable=True),
        *_budget_columns(),
    )
    op.create_table(
        "parley_tags",
        sa.Column("tag", sa.String(255), primary_key=True),
        sa.Column("spend", sa.Double, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    op.create_table(
        "parley_spend_logs",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("api_key", sa.String(64), nullable=True, index=True),
        sa.Column("key_alias", sa.String(255), nullable=True),
        sa.Column("user", sa.String(255), nullable=True, index=True),
        sa.Column("team_id", sa.String(255), nullable=True, index=True),
        sa.Column("end_user", sa.String(255), nullable=True, index=True),
        sa.Column("session_id", sa.String(255), nullable=True),
        sa.Column("request_tags", sa.JSON, nullable=True),
        sa.Column("route", sa.String(128), nullable=False),
        sa.Column("model", sa.String(255), nullable=True, index=True),
        sa.Column("model_id", sa.String(255), nullable=True),
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
        sa.Column("day", sa.String(10), nullable=False, index=True),
    )
    op.create_table(
        "parley_spend_log_tags",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("tag", sa.String(255), primary_key=True, index=True),
    )


def downgrade() -> None:
    for name in (
        "parley_spend_log_tags",
        "parley_spend_logs",
        "parley_tags",
        "parley_customers",
        "parley_teams",
        "parley_users",
        "parley_keys",
    ):
        op.drop_table(name)
