"""Message Batches run by the gateway: batches and their items.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "parley_batches",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("api_key", sa.String(64), nullable=True, index=True),
        sa.Column("team_id", sa.String(255), nullable=True),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("headers", sa.JSON, nullable=True),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False, index=True),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.Column("ended_at", sa.Double, nullable=True),
        sa.Column("cancel_initiated_at", sa.Double, nullable=True),
    )
    op.create_table(
        "parley_batch_items",
        sa.Column("batch_id", sa.String(64), primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("custom_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.Double, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("finished_at", sa.Double, nullable=True),
        sa.Column("upstream_batch", sa.String(64), nullable=True),  # a native batch's id upstream
        sa.Column("deployment", sa.String(255), nullable=True),  # the deployment it was sent to
    )
    op.create_index("ix_parley_batch_items_state", "parley_batch_items", ["state", "lease_until"])


def downgrade() -> None:
    op.drop_index("ix_parley_batch_items_state", table_name="parley_batch_items")
    op.drop_table("parley_batch_items")
    op.drop_table("parley_batches")
