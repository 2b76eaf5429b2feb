"""Server-held threads; Claude Code's version and entrypoint on spend rows.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "parley_threads",
        sa.Column("message_id", sa.String(128), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("model", sa.String(255), nullable=True),
        sa.Column("state", sa.Text, nullable=True),
        sa.Column("continued_by", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Double, nullable=False, index=True),
    )
    with op.batch_alter_table("parley_spend_logs") as batch:
        batch.add_column(sa.Column("cc_version", sa.String(64), nullable=True))
        batch.add_column(sa.Column("cc_entrypoint", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("parley_spend_logs") as batch:
        batch.drop_column("cc_entrypoint")
        batch.drop_column("cc_version")
    op.drop_table("parley_threads")
