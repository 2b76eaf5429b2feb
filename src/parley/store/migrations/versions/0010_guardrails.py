"""Guardrails attached to keys and teams; what guardrails did, on each spend-log row.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("parley_keys", sa.Column("guardrails", sa.JSON, nullable=True))
    op.add_column("parley_teams", sa.Column("guardrails", sa.JSON, nullable=True))
    op.add_column("parley_spend_logs", sa.Column("guardrails", sa.String(512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("parley_spend_logs") as batch:
        batch.drop_column("guardrails")
    with op.batch_alter_table("parley_teams") as batch:
        batch.drop_column("guardrails")
    with op.batch_alter_table("parley_keys") as batch:
        batch.drop_column("guardrails")
