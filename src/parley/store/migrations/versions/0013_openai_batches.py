"""OpenAI batches (`/v1/batches`) on the batch runner: a batch's kind, its OpenAI fields, and when
its output files were written.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("parley_batches") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=True))
        batch.add_column(sa.Column("extra", sa.JSON, nullable=True))
        batch.add_column(sa.Column("finalized_at", sa.Double, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("parley_batches") as batch:
        batch.drop_column("finalized_at")
        batch.drop_column("extra")
        batch.drop_column("kind")
