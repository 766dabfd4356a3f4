"""The workspace a database belongs to, as a keyed fingerprint (one row).

Revision ID: 0004
Revises: 0003

Filled on the first open by a workspace; a database that a different
workspace (another secret) has claimed is refused, so pseudonyms never mix.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the one-row table, empty."""
    op.create_table(
        "workspace",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column(
            "fingerprint",
            sa.String().with_variant(sa.String(collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.CheckConstraint("id = 1", name="one_row"),
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("workspace")
