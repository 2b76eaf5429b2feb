"""Response-cache entries shared through the database (the semantic cache).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "parley_cache",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("expires", sa.Double, nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("parley_cache")
