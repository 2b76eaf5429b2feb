"""Index spend logs by session, for `/spend/logs?session_id=` and `/spend/report?group_by=session`.

The `session_id` column is in 0001 (Claude Code's `X-Claude-Code-Session-Id`, or the session in
`metadata.user_id`); reports by session group and filter on it.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_parley_spend_logs_session_id", "parley_spend_logs", ["session_id"])


def downgrade() -> None:
    op.drop_index("ix_parley_spend_logs_session_id", table_name="parley_spend_logs")
