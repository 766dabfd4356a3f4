"""Tables of the state database.

Everything here lives in the workspace and may hold original identifiers
(paths, UIDs, patient ids): it is the honest broker's side, never exported.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, CheckConstraint, Integer, String, Table
from sqlalchemy.types import TypeEngine
from sqlmodel import AutoString, Field, SQLModel, UniqueConstraint

# PostgreSQL's INTEGER has 32 bits; sizes and nanosecond times need 64, which
# SQLite's INTEGER already has (the variant keeps its schema as it was).
WIDE_INTEGER: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")

# Text compares and sorts by code point on PostgreSQL too, as in SQLite and
# Python: the folder index pages by path and merges with a Python sort, and
# ordered listings (the linkage file) stay the same on either database.
CODE_POINT_TEXT: TypeEngine[str] = String().with_variant(
    String(collation="C"), "postgresql"
)


def utcnow() -> datetime:
    """Timezone-aware now, for audit timestamps."""
    return datetime.now(UTC)


class IndexedFile(SQLModel, table=True):
    """One file seen under a folder source, with the header fields selection needs."""

    path: str = Field(primary_key=True)
    root: str = Field(index=True)
    size: int = Field(sa_type=WIDE_INTEGER)
    mtime_ns: int = Field(sa_type=WIDE_INTEGER)
    skip_reason: str | None = None
    patient_id: str | None = Field(default=None, index=True)
    study_uid: str | None = Field(default=None, index=True)
    series_uid: str | None = None
    sop_uid: str | None = None
    sop_class_uid: str | None = None
    accession_number: str | None = Field(default=None, index=True)
    study_date: str | None = None
    modality: str | None = None
    transfer_syntax_uid: str | None = None


class Job(SQLModel, table=True):
    """One export: manifest x source x recipe -> export folder."""

    id: str = Field(primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    manifest_path: str
    manifest_digest: str
    source: str
    out_dir: str
    recipe_digest: str
    state: str = "planning"  # planning -> running -> finished


class Task(SQLModel, table=True):
    """One study of a job; the unit of work, retry and resume."""

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(index=True)
    ordinal: int
    study_uid: str
    patient_id: str
    subject_id: str | None = None
    instances: int = 0  # in the source when planned; a change redoes the study
    state: str = "pending"  # pending -> done
    exported: int = 0
    quarantined: int = 0
    failed: int = 0
    bytes_out: int = Field(default=0, sa_type=WIDE_INTEGER)
    pixels_cleaned: int = 0  # released after burned-in text was scrubbed
    # A runner holding the task until the lease ends; both None when free.
    claimed_by: str | None = None
    claimed_until: datetime | None = None


class RowMatch(SQLModel, table=True):
    """Which studies a manifest row selected (a study may serve several rows)."""

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(index=True)
    row: int
    study_uid: str | None = None  # None: the row matched nothing


class Outcome(SQLModel, table=True):
    """An instance that was not exported, and why."""

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(index=True)
    task_id: int = Field(index=True)
    source_item: str
    status: str  # quarantined | failed
    reason: str
    quarantine_path: str | None = None


class Linkage(SQLModel, table=True):
    """Original identifier -> pseudonym, for the honest broker only."""

    __table_args__ = (UniqueConstraint("kind", "original"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str  # patient | uid | date_offset
    original: str
    pseudonym: str


class Witness(SQLModel, table=True):
    """An identifying value seen in a source instance, for ``exporter verify``.

    Identifying by design: it stays in the workspace with the linkage.
    """

    __table_args__ = (UniqueConstraint("kind", "value", "patient"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str  # name | patient id | accession number | birth date | ...
    value: str
    # The patient pseudonym for dates, which are looked for in that patient's
    # files only (another patient's shifted date may equal them by chance);
    # empty for everything else, which is looked for everywhere.
    patient: str = ""


class WorkspaceIdentity(SQLModel, table=True):
    """The one workspace a database belongs to, by a keyed fingerprint.

    Pseudonyms are derived under the workspace secret, so two workspaces
    sharing a database would mix them. The fingerprint is an HMAC of a fixed
    label under that secret: it tells workspaces apart and reveals nothing of
    the secret.
    """

    __tablename__ = "workspace"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: int = Field(
        default=1, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    fingerprint: str
    created_at: datetime = Field(default_factory=utcnow)


def _code_point_order() -> None:
    """Give every text column of these tables the code point collation."""
    models = (IndexedFile, Job, Task, RowMatch, Outcome, Linkage, Witness)
    for model in (*models, WorkspaceIdentity):
        table: Table = model.__table__  # type: ignore[union-attr]
        for column in table.columns:
            if isinstance(column.type, AutoString | String):
                column.type = CODE_POINT_TEXT


_code_point_order()
