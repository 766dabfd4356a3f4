"""The schema exporter 0.1.0 created with ``create_all``, before migrations.

Revision ID: 0001
Revises: -
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the tables, indexes and unique constraints of exporter 0.1.0."""
    op.create_table(
        "indexedfile",
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("root", sa.String(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("mtime_ns", sa.Integer(), nullable=False),
        sa.Column("skip_reason", sa.String(), nullable=True),
        sa.Column("patient_id", sa.String(), nullable=True),
        sa.Column("study_uid", sa.String(), nullable=True),
        sa.Column("series_uid", sa.String(), nullable=True),
        sa.Column("sop_uid", sa.String(), nullable=True),
        sa.Column("sop_class_uid", sa.String(), nullable=True),
        sa.Column("accession_number", sa.String(), nullable=True),
        sa.Column("study_date", sa.String(), nullable=True),
        sa.Column("modality", sa.String(), nullable=True),
        sa.Column("transfer_syntax_uid", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("path"),
    )
    for column in ("root", "patient_id", "study_uid", "accession_number"):
        op.create_index(f"ix_indexedfile_{column}", "indexedfile", [column])

    op.create_table(
        "job",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("manifest_path", sa.String(), nullable=False),
        sa.Column("manifest_digest", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("out_dir", sa.String(), nullable=False),
        sa.Column("recipe_digest", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )

    op.create_table(
        "task",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("study_uid", sa.String(), nullable=False),
        sa.Column("patient_id", sa.String(), nullable=False),
        sa.Column("subject_id", sa.String(), nullable=True),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("exported", sa.Integer(), nullable=False),
        sa.Column("quarantined", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("bytes_out", sa.Integer(), nullable=False),
        sa.Column("pixels_cleaned", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_task_job_id", "task", ["job_id"])

    op.create_table(
        "rowmatch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("study_uid", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_rowmatch_job_id", "rowmatch", ["job_id"])

    op.create_table(
        "outcome",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("source_item", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("quarantine_path", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_outcome_job_id", "outcome", ["job_id"])
    op.create_index("ix_outcome_task_id", "outcome", ["task_id"])

    op.create_table(
        "linkage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("original", sa.String(), nullable=False),
        sa.Column("pseudonym", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "original"),
    )

    op.create_table(
        "witness",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("patient", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "value", "patient"),
    )


def downgrade() -> None:
    """Drop every table."""
    for table in ("witness", "linkage", "outcome", "rowmatch", "task", "job"):
        op.drop_table(table)
    op.drop_table("indexedfile")
