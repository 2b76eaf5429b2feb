"""Keys name the managed end users they may charge.

Revision ID: 0006
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("parley_keys") as batch:
        batch.add_column(sa.Column("end_users", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("parley_keys") as batch:
        batch.drop_column("end_users")
