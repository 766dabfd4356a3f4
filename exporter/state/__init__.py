"""The state database: sqlmodel tables in the workspace (SQLite by default)."""

from exporter.state.db import open_database
from exporter.state.models import (
    IndexedFile,
    Job,
    Linkage,
    Outcome,
    RowMatch,
    Task,
    Witness,
)

__all__ = [
    "IndexedFile",
    "Job",
    "Linkage",
    "Outcome",
    "RowMatch",
    "Task",
    "Witness",
    "open_database",
]
