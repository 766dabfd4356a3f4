"""PostgreSQL: text in code point order, 64-bit sizes and times.

Revision ID: 0003
Revises: 0002

SQLite needs neither: its BINARY collation is code point order and its INTEGER
has 64 bits, so this revision changes nothing there. On PostgreSQL a database
created with a locale collation would sort paths so that the folder index
cannot page through them, and INTEGER (32 bits) cannot hold a nanosecond
mtime or a size past 2 GiB.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Every text column as of revision 0002.
TEXT = {
    "indexedfile": (
        "path",
        "root",
        "skip_reason",
        "patient_id",
        "study_uid",
        "series_uid",
        "sop_uid",
        "sop_class_uid",
        "accession_number",
        "study_date",
        "modality",
        "transfer_syntax_uid",
    ),
    "job": (
        "id",
        "manifest_path",
        "manifest_digest",
        "source",
        "out_dir",
        "recipe_digest",
        "state",
    ),
    "task": ("job_id", "study_uid", "patient_id", "subject_id", "state", "claimed_by"),
    "rowmatch": ("job_id", "study_uid"),
    "outcome": ("job_id", "source_item", "status", "reason", "quarantine_path"),
    "linkage": ("kind", "original", "pseudonym"),
    "witness": ("kind", "value", "patient"),
}
WIDE = {"indexedfile": ("size", "mtime_ns"), "task": ("bytes_out",)}
# Older sqlmodel versions made these without a time zone.
TIMESTAMPS = {"job": ("created_at", "finished_at")}


def upgrade() -> None:
    """Alter the column types on PostgreSQL; nothing elsewhere."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in TEXT.items():
        for column in columns:
            op.alter_column(table, column, type_=sa.String(collation="C"))
    for table, columns in WIDE.items():
        for column in columns:
            op.alter_column(table, column, type_=sa.BigInteger())
    for table, columns in TIMESTAMPS.items():
        for column in columns:
            op.alter_column(table, column, type_=sa.DateTime(timezone=True))


def downgrade() -> None:
    """Back to the database's default collation and 32-bit integers."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in WIDE.items():
        for column in columns:
            op.alter_column(table, column, type_=sa.Integer())
    for table, columns in TEXT.items():
        for column in columns:
            op.alter_column(table, column, type_=sa.String())
