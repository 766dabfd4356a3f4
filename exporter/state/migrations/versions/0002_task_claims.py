"""Task leases: which runner holds a task, and until when.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable claim columns; every existing task starts unclaimed."""
    op.add_column("task", sa.Column("claimed_by", sa.String(), nullable=True))
    op.add_column(
        "task",
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    """Drop the claim columns."""
    with op.batch_alter_table("task") as batch:
        batch.drop_column("claimed_until")
        batch.drop_column("claimed_by")
